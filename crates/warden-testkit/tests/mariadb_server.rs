//! The testkit's throwaway MariaDB: its own data directory on a free port, whose committed rows survive a SIGKILL
//! and a restart, which stops answering while paused, and which never touches the machine's own server.

use mysql_async::prelude::*;
use std::time::Duration;
use warden_testkit::MariaDbServer;

#[tokio::test]
async fn data_survives_a_kill_and_a_paused_server_does_not_answer() {
    let mut db = MariaDbServer::start();
    assert_ne!(db.port(), 3306, "the machine's own server's port");
    let pool = mysql_async::Pool::new(db.url().as_str());
    let mut c = pool.get_conn().await.expect("connect");
    c.query_drop("CREATE DATABASE w").await.expect("create database");
    c.query_drop("CREATE TABLE w.fence (n BIGINT) ENGINE=InnoDB")
        .await
        .expect("create table");
    c.query_drop("INSERT INTO w.fence VALUES (41)").await.expect("insert");
    drop(c);
    db.kill();
    db.restart();
    let pool = mysql_async::Pool::new(db.url().as_str());
    let mut c = pool.get_conn().await.expect("connect after restart");
    let n: Option<i64> = c.query_first("SELECT n FROM w.fence").await.expect("read");
    assert_eq!(n, Some(41), "the committed row was lost by the kill");

    db.pause();
    let paused = tokio::time::timeout(Duration::from_millis(300), c.query_drop("SELECT 1")).await;
    assert!(paused.is_err(), "a paused server answered: {paused:?}");
    db.resume();
    let one: Option<i32> = tokio::time::timeout(Duration::from_secs(5), c.query_first("SELECT 1"))
        .await
        .expect("answers after resume")
        .expect("query");
    assert_eq!(one, Some(1));
    drop(c);
    let _ = pool.disconnect().await;
}
