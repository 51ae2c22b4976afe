//! `warden serve --config warden.toml`: settings for `serve` from a TOML file. Each key is a `serve` flag's
//! long name (`header-timeout` or `header_timeout`), each value what the flag takes (`"30s"`, `10000`, `true`).
//! Flags and environment variables win over the file; the file wins over the defaults.
//!
//! clap has no config-file layer, so this one is written here: the command line is parsed once to learn which
//! settings the user gave (flag or environment), the file's other settings are appended as flags, and the
//! result is parsed again, so each value is checked by the same parser as its flag.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use std::ffi::OsString;

/// The command line with the config file's settings added, or a usage error naming the file.
pub fn with_config_file(cmd: Command, args: Vec<OsString>) -> Result<ArgMatches, clap::Error> {
    let matches = cmd.clone().try_get_matches_from(&args)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(matches);
    };
    let Some(path) = serve.get_one::<std::path::PathBuf>("config") else {
        return Ok(matches);
    };
    let fail = |msg: String| {
        let mut c = cmd.clone();
        c.error(
            clap::error::ErrorKind::InvalidValue,
            format!("{}: {msg}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| fail(format!("not valid TOML: {}", e.message())))?;
    let serve_cmd = cmd
        .find_subcommand("serve")
        .cloned()
        .ok_or_else(|| fail("no serve command".into()))?;
    let flags: Vec<(String, String)> = serve_cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| (a.get_id().to_string(), l.to_string())))
        .filter(|(id, _)| id != "config" && id != "help" && id != "token")
        .collect();
    let mut extra = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some((id, long)) = flags.iter().find(|(_, l)| *l == long) else {
            let known: Vec<&str> = flags.iter().map(|(_, l)| l.as_str()).collect();
            return Err(fail(format!("unknown setting `{key}`; known: {}", known.join(", "))));
        };
        // Given on the command line or in the environment: that wins.
        if matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => extra.push(OsString::from(format!("--{long}"))),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.push(OsString::from(format!("--{long}={s}"))),
            toml::Value::Integer(n) => extra.push(OsString::from(format!("--{long}={n}"))),
            _ => return Err(fail(format!("`{key}` must be a string, a whole number or true/false"))),
        }
    }
    let mut all = args;
    all.extend(extra);
    cmd.clone().try_get_matches_from(all).map_err(|e| {
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string();
        fail(first)
    })
}
