//! The conformance suite on `zk://` recording grants (`conditions=on`), against a throwaway standalone ZooKeeper
//! started per test. (The three-server suite runs in the default mode.)
use warden_testkit::zk_harness::ZkHarness;

warden_testkit::conformance_tests!(ZkHarness::recording());

/// Recording is the ensemble's setting (see `conformance::conditions_setting`).
#[tokio::test]
async fn recording_is_the_ensembles_setting() {
    let plain = ZkHarness::new();
    warden_testkit::conformance::conditions_setting(&plain, plain.url()).await;
}
