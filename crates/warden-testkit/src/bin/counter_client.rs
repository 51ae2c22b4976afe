//! Test helper: a process that increments a counter kept in a PostgreSQL table `argv[3]` times, each time
//! under the lock `counter` of the backend at `argv[1]`. The increment is deliberately not atomic (SELECT,
//! then UPDATE): only the lock keeps two processes from losing an update. Every write also appends the hold's
//! fencing token to the table `counter_fences`, so the parent can check the tokens grew in commit order.
//! `argv[2]` is the PostgreSQL URL of the counter. Exits non-zero on any error.

use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(store), Some(n)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: counter_client BACKEND_URL COUNTER_POSTGRES_URL INCREMENTS");
        std::process::exit(2);
    };
    if let Err(e) = run(url, store, n).await {
        eprintln!("counter_client: {e}");
        std::process::exit(1);
    }
}

async fn run(url: &str, store: &str, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    let warden = warden::Warden::connect(url).await?;
    let (db, conn) = tokio_postgres::connect(store, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    for _ in 0..n {
        let mut g = warden
            .lock("counter")
            .ttl(Duration::from_secs(5))
            .wait(Duration::from_secs(60))
            .acquire()
            .await?;
        let v: i64 = db.query_one("SELECT v FROM counter WHERE id = 1", &[]).await?.get(0);
        tokio::task::yield_now().await;
        db.execute("UPDATE counter SET v = $1 WHERE id = 1", &[&(v + 1)])
            .await?;
        db.execute(
            "INSERT INTO counter_fences (fence) VALUES ($1)",
            &[&(g.fencing_token() as i64)],
        )
        .await?;
        g.release().await?;
    }
    Ok(())
}
