//! The conformance suite on `etcd://` recording grants (`conditions=on`), against a throwaway single-member etcd
//! started per test. (The three-member suite runs in the default mode.)
use warden_testkit::etcd_harness::EtcdHarness;

warden_testkit::conformance_tests!(EtcdHarness::recording());

/// Recording is the store's setting (see `conformance::conditions_setting`).
#[tokio::test]
async fn recording_is_the_stores_setting() {
    let plain = EtcdHarness::new();
    warden_testkit::conformance::conditions_setting(&plain, plain.url()).await;
}
