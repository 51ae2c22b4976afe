//! The conformance suite on `zk://` recording grants (`conditions=on`), against a throwaway standalone ZooKeeper
//! started per test. (The three-server suite runs in the default mode.)
use warden_testkit::zk_harness::ZkHarness;

warden_testkit::conformance_tests!(ZkHarness::recording());

/// Recording is the ensemble's setting: a process that connects without asking follows it, and one that
/// connected before it was turned on does not offer conditions.
#[tokio::test]
async fn recording_is_the_ensembles_setting() {
    use warden_testkit::harness::Harness;
    let plain = ZkHarness::new();
    let before = plain.client().await;
    assert!(!before.capabilities().conditions, "off by default");
    let r = before.lock("r").if_fencing_token(1).try_acquire().await;
    assert!(matches!(r, Err(warden::Error::Unsupported { .. })), "{r:?}");
    let on = warden::Warden::connect(&format!("{}&conditions=on", plain.url()))
        .await
        .expect("connect recording");
    assert!(on.capabilities().conditions);
    let later = plain.client().await;
    assert!(later.capabilities().conditions, "a later process follows the ensemble");
    // A grant made by the recording process is what the later one's condition sees.
    let mut g = on.lock("r").try_acquire().await.expect("try").expect("free");
    let t = g.fencing_token();
    g.release().await.expect("release");
    let mut again = later
        .lock("r")
        .if_fencing_token(t)
        .try_acquire()
        .await
        .expect("resume")
        .expect("t is the last token");
    again.release().await.expect("release");
    assert!(matches!(
        later.lock("r").if_fencing_token(t).try_acquire().await,
        Err(warden::Error::ConditionFailed { .. })
    ));
    let r = warden::Warden::connect(&format!("{}&conditions=maybe", plain.url())).await;
    assert!(
        matches!(
            r,
            Err(warden::Error::InvalidArgument {
                field: "conditions",
                ..
            })
        ),
        "{r:?}"
    );
}
