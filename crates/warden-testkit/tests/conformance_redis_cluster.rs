//! The conformance suite on `redis+cluster://`, against a real 3-primary, 3-replica Redis Cluster per test.
use warden_testkit::cluster_harness::RedisClusterHarness;

warden_testkit::conformance_tests!(RedisClusterHarness::new());
