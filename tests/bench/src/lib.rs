//! The benchmark harness's Rust half: a mock upstream fast enough never to be the bottleneck
//! ([`upstream`]) and a load generator that measures what `wrk`/`oha` cannot, time to first
//! chunk and inter-chunk gaps of server-sent event streams ([`load`]). The orchestration
//! (targets, CPU pinning, CPU time, RSS, the ratio table) is `tests/bench/bench.py`.

pub mod load;
pub mod stats;
pub mod upstream;
