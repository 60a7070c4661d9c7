/* Benchmark worker W4: the smallest possible worker, one `complete` line and exit. */
#include <stdio.h>
int main(void) {
    fputs("{\"type\":\"complete\"}\n", stdout);
    return 0;
}
