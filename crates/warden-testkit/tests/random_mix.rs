//! The randomized checker on real backends: concurrent clients mixing exclusive, shared, read, write and
//! semaphore holds on a few resources; the history must show no incompatible overlap, no semaphore over its
//! permits, no fencing token twice, and no acquire that timed out (a deadlock or a starved waiter).

use warden_testkit::harness::{MemoryHarness, RedisHarness};
use warden_testkit::mix::random_mix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_fifty_thousand_cycles() {
    let s = random_mix(&MemoryHarness::new(), 16, 8, 50_000, 0x5eed).await;
    assert!(s.operations >= 100_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
    assert!(s.most_readers >= 2, "no lock ever had two readers: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_twenty_five_thousand_cycles() {
    let s = random_mix(&RedisHarness::new(), 16, 8, 25_000, 0xfeed).await;
    assert!(s.operations >= 50_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_thousand_cycles() {
    let s = random_mix(
        &warden_testkit::postgres_harness::PostgresHarness::new(),
        16,
        8,
        2_000,
        0xbeef,
    )
    .await;
    assert!(s.operations >= 4_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_thousand_cycles() {
    let s = random_mix(
        &warden_testkit::mysql_harness::MysqlHarness::new(),
        16,
        8,
        2_000,
        0xcafe,
    )
    .await;
    assert!(s.operations >= 4_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_thousand_cycles() {
    let s = random_mix(&warden_testkit::etcd_harness::EtcdHarness::new(), 16, 8, 2_000, 0xe7cd).await;
    assert!(s.operations >= 4_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_two_thousand_cycles() {
    let s = random_mix(&warden_testkit::zk_harness::ZkHarness::new(), 16, 8, 2_000, 0x200c).await;
    assert!(s.operations >= 4_000, "{s:?}");
    assert!(s.most_permits_in_use >= 2, "no semaphore ever had two holders: {s:?}");
}
