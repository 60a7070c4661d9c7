//! Which Redis errors are "unavailable" (retried by the runner, answered 503 by the API) rather
//! than hard failures: a primary refusing writes for want of replicas (NOREPLICAS) is, whether
//! the refused command ran alone or in a pipeline.

use swarmq_shared::StoreError;
use swarmq_testkit::RedisServer;

#[tokio::test]
async fn noreplicas_is_unavailable_in_a_pipeline_as_on_its_own() {
    let redis = RedisServer::start();
    redis.cli(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let alone: redis::RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query_async(&mut conn)
        .await;
    let piped: redis::RedisResult<()> = redis::pipe()
        .cmd("SET")
        .arg("k")
        .arg(1)
        .cmd("WAIT")
        .arg(1)
        .arg(10)
        .query_async(&mut conn)
        .await;
    for refused in [alone, piped] {
        let e = refused.expect_err("a write without replicas is refused");
        assert!(e.to_string().contains("NOREPLICAS"), "{e}");
        assert!(StoreError::Redis(e).is_unavailable());
    }
}
