//! `MONITOR` on a test server: every command it runs, top-level calls and the commands scripts run inside
//! them, in order (through `redis-cli monitor`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// One command the server ran.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Run by a script (`[0 lua]`) rather than sent by a client.
    pub from_script: bool,
    /// The command and its arguments, as bytes.
    pub args: Vec<Vec<u8>>,
}

/// A running `redis-cli monitor`; [`Monitor::stop`] returns what it saw.
pub struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    /// Starts monitoring the server on `port`; returns once the server confirmed.
    pub fn start(port: u16) -> Self {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli (from redis-tools) is needed for this test");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready, started) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "OK" {
                    let _ = ready.send(());
                    continue;
                }
                sink.lock().expect("monitor lines").push(line);
            }
        });
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("MONITOR did not start");
        Monitor { child, lines }
    }

    /// Everything seen so far, parsed.
    pub fn seen(&self) -> Vec<Seen> {
        self.lines
            .lock()
            .expect("monitor lines")
            .iter()
            .filter_map(|l| parse(l))
            .collect()
    }

    /// Stops monitoring.
    pub fn stop(mut self) -> Vec<Seen> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen()
    }
}

/// Parses `1700000000.123456 [0 lua] "SET" "k\x01" ...`.
fn parse(line: &str) -> Option<Seen> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let from_script = line[open..close].ends_with("lua");
    let mut args = Vec::new();
    let mut bytes = line[close + 1..].bytes().peekable();
    while let Some(b) = bytes.next() {
        if b != b'"' {
            continue;
        }
        let mut arg = Vec::new();
        while let Some(c) = bytes.next() {
            match c {
                b'"' => break,
                b'\\' => match bytes.next()? {
                    b'x' => {
                        let hex = [bytes.next()?, bytes.next()?];
                        arg.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    }
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    other => arg.push(other),
                },
                other => arg.push(other),
            }
        }
        args.push(arg);
    }
    Some(Seen { from_script, args })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_escapes() {
        let s = super::parse(r#"1700000000.1 [0 lua] "SET" "{4yT}\x01fa\"b" "x\\y""#).unwrap();
        assert!(s.from_script);
        assert_eq!(
            s.args,
            vec![b"SET".to_vec(), b"{4yT}\x01fa\"b".to_vec(), b"x\\y".to_vec()]
        );
    }
}
