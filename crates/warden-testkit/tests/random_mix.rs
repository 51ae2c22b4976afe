//! The randomized checker on real backends: concurrent clients mixing exclusive, shared, read, write and
//! semaphore holds, alone or grouped, some conditional, with waiter priorities and path locks on a small tree
//! where offered, on a few resources; the history must show no incompatible overlap (nor two paths one at or
//! below the other held at once unless both shared), no semaphore over its permits, no fencing token
//! twice, no conditional grant that broke its condition, and no acquire that timed out (a deadlock or a starved
//! waiter).

use warden_testkit::harness::{Harness, MemoryHarness, RedisHarness};
use warden_testkit::mix::random_mix;

/// `cycles` acquire + release pairs from 16 clients over 8 resources; a semaphore must have had two holders at
/// once (else the run did not test what it is for).
async fn check(h: &dyn Harness, cycles: usize, seed: u64) -> warden_testkit::mix::MixSummary {
    let s = random_mix(h, 16, 8, cycles, seed).await;
    assert!(s.operations >= 2 * cycles, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
    assert!(s.groups >= cycles / 8, "too few groups: {s:?}");
    if h.client().await.capabilities().intentions {
        assert!(s.paths >= cycles / 10, "too few path locks: {s:?}");
    }
    if h.client().await.capabilities().conditions {
        assert!(
            s.conditional >= cycles / 200 && s.conditions_failed >= cycles / 200,
            "too few conditional acquires granted and refused: {s:?}"
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_fifty_thousand_cycles() {
    let s = check(&MemoryHarness::new(), 50_000, 0x5eed).await;
    assert!(s.most_readers >= 2, "no lock ever had two readers: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_twenty_five_thousand_cycles() {
    let _ = check(&RedisHarness::new(), 25_600, 0xfeed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_thousand_cycles() {
    let _ = check(&warden_testkit::postgres_harness::PostgresHarness::new(), 2_000, 0xbeef).await;
}

/// Every client one process: a call mixes every kind on the same resources, its uncontended exclusive
/// releases and grants run as one statement each, the rest one by one after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_process_two_thousand_cycles() {
    let h = warden_testkit::one_process::OneProcess::new(warden_testkit::postgres_harness::PostgresHarness::new());
    let _ = check(&h, 2_000, 0xbef0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_thousand_cycles() {
    let _ = check(&warden_testkit::mysql_harness::MysqlHarness::new(), 2_000, 0xcafe).await;
}

/// Every client one process: uncontended grants and releases share the fast path's transactions, contended
/// ones go to the procedures, on the same resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_one_process_two_thousand_cycles() {
    let h = warden_testkit::one_process::OneProcess::new(warden_testkit::mysql_harness::MysqlHarness::new());
    let _ = check(&h, 2_000, 0xcaff).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_thousand_cycles() {
    let _ = check(&warden_testkit::etcd_harness::EtcdHarness::recording(), 2_000, 0xe7cd).await;
}

/// Every client one process, grants not recorded: the tasks' writes share transactions (group commit) and
/// handoffs between them take no read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_one_process_two_thousand_cycles() {
    let h = warden_testkit::one_process::OneProcess::new(warden_testkit::etcd_harness::EtcdHarness::new());
    let _ = check(&h, 2_000, 0xe7ce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_two_thousand_cycles() {
    let _ = check(&warden_testkit::zk_harness::ZkHarness::recording(), 2_000, 0x200c).await;
}
