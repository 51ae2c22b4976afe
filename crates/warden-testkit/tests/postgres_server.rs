//! The testkit's throwaway PostgreSQL: a cluster of its own on a free port, whose data survives a SIGKILL and a
//! restart, which stops answering while paused, and which never touches the machine's own server.

use std::time::Duration;
use tokio_postgres::NoTls;
use warden_testkit::PostgresServer;

async fn connect(pg: &PostgresServer) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test]
async fn data_survives_a_kill_and_a_paused_server_does_not_answer() {
    let mut pg = PostgresServer::start();
    assert_ne!(pg.port(), 5432, "the machine's own server's port");
    let c = connect(&pg).await;
    c.batch_execute("CREATE TABLE fence (n bigint); INSERT INTO fence VALUES (41)")
        .await
        .expect("write");
    pg.kill();
    assert!(c.query_one("SELECT 1", &[]).await.is_err(), "a killed server answered");
    pg.restart();
    let c = connect(&pg).await;
    let n: i64 = c.query_one("SELECT n FROM fence", &[]).await.expect("read").get(0);
    assert_eq!(n, 41, "the committed row was lost by the kill");

    pg.pause();
    let paused = tokio::time::timeout(Duration::from_millis(300), c.query_one("SELECT 1", &[])).await;
    assert!(paused.is_err(), "a paused server answered");
    pg.resume();
    let one: i32 = tokio::time::timeout(Duration::from_secs(5), c.query_one("SELECT 1", &[]))
        .await
        .expect("answers after resume")
        .expect("query")
        .get(0);
    assert_eq!(one, 1);
}
