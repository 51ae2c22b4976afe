//! Test helper: a process that increments a counter kept in a database table `argv[3]` times, each time under
//! the lock `counter` of the backend at `argv[1]`. The increment is deliberately not atomic (SELECT, then
//! UPDATE): only the lock keeps two processes from losing an update. Every write also appends the hold's fencing
//! token to the table `counter_fences`, so the parent can check the tokens grew in commit order. `argv[2]` is
//! the PostgreSQL (`postgres://`) or MySQL (`mysql://`) URL of the counter. Exits non-zero on any error.

use mysql_async::prelude::Queryable;
use std::time::Duration;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(store), Some(n)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: counter_client BACKEND_URL COUNTER_DATABASE_URL INCREMENTS");
        std::process::exit(2);
    };
    if let Err(e) = run(url, store, n).await {
        eprintln!("counter_client: {e}");
        std::process::exit(1);
    }
}

/// The table the counter lives in.
enum Store {
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

impl Store {
    async fn open(url: &str) -> Result<Self, Failure> {
        if url.starts_with("mysql://") {
            return Ok(Store::Mysql(mysql_async::Conn::from_url(url).await?));
        }
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Store::Postgres(db))
    }

    async fn read(&mut self) -> Result<i64, Failure> {
        Ok(match self {
            Store::Postgres(db) => db.query_one("SELECT v FROM counter WHERE id = 1", &[]).await?.get(0),
            Store::Mysql(db) => db
                .query_first("SELECT v FROM counter WHERE id = 1")
                .await?
                .ok_or("no counter row")?,
        })
    }

    async fn write(&mut self, v: i64, fence: i64) -> Result<(), Failure> {
        match self {
            Store::Postgres(db) => {
                db.execute("UPDATE counter SET v = $1 WHERE id = 1", &[&v]).await?;
                db.execute("INSERT INTO counter_fences (fence) VALUES ($1)", &[&fence])
                    .await?;
            }
            Store::Mysql(db) => {
                db.exec_drop("UPDATE counter SET v = ? WHERE id = 1", (v,)).await?;
                db.exec_drop("INSERT INTO counter_fences (fence) VALUES (?)", (fence,))
                    .await?;
            }
        }
        Ok(())
    }
}

async fn run(url: &str, store: &str, n: u32) -> Result<(), Failure> {
    let warden = warden::Warden::connect(url).await?;
    let mut db = Store::open(store).await?;
    for _ in 0..n {
        let mut g = warden
            .lock("counter")
            .ttl(Duration::from_secs(5))
            .wait(Duration::from_secs(60))
            .acquire()
            .await?;
        let v = db.read().await?;
        tokio::task::yield_now().await;
        db.write(v + 1, g.fencing_token() as i64).await?;
        g.release().await?;
    }
    Ok(())
}
