//! The Lua transitions, one file each under `src/lua/`, each headed by what its `KEYS`, `ARGV` and
//! return value mean. Session transitions are prefixed with `lua/prelude.lua` (the shared
//! helpers: `emit`, `terminate`, `finish_session`, the fencing check); the global ones stand alone.
//! `redis::Script` runs them with EVALSHA and reloads them after a Redis restart (NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

macro_rules! session_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

macro_rules! global_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

session_script!(INIT_SESSION, "init_session.lua");
session_script!(CREATE_SESSION, "create_session.lua");
session_script!(FAIL_SESSION, "fail_session.lua");
session_script!(CANCEL_SESSION, "cancel_session.lua");
session_script!(SNAPSHOT, "snapshot.lua");
session_script!(START_AGENT, "start_agent.lua");
session_script!(ASSIGN_NEXT, "assign_next.lua");
session_script!(COMPLETE_TODO, "complete_todo.lua");
session_script!(FAIL_ATTEMPT, "fail_attempt.lua");
session_script!(RELEASE_AGENT, "release_agent.lua");
session_script!(EMIT_EVENTS, "emit_events.lua");
session_script!(STREAM_READY, "stream_ready.lua");

global_script!(HEARTBEAT, "heartbeat.lua");
global_script!(DEAD_RUNNERS, "dead_runners.lua");
global_script!(REQUEUE_JOB, "requeue_job.lua");
global_script!(FORGET_RUNNER, "forget_runner.lua");
