//! `kv`: the data service's KV stores from the console (the image links
//! it to the multi-call `sa_main`). Stores are the calling uid's own;
//! root names another uid's as `<uid>:<store>`.
//!
//! ```text
//! kv ls                          the caller's stores
//! kv get <store> <key>           the value, as it is (bytes) on stdout
//! kv put <store> <key> <value>   stores it (durably, when kv returns)
//! kv rm <store> <key>            deletes it (exit 1 if it was not there)
//! kv dump <store> [prefix]       every entry: key, tab, value (lossy UTF-8),
//!                                as the store was when the dump began
//! kv backup <store> <name>       copies the store into its backup <name>
//! kv restore <store> <name>      makes the store its backup <name> again
//! kv backups <store>             the store's backups
//! kv watch <store>               each committed change: store, tab, key
//!                                (until interrupted; "lost N" if it fell behind)
//! ```
//! `SAMGR_SOCKET` overrides samgr's socket path. Errors name the store or
//! key and what the service said; exit status 2 for usage, 1 otherwise.

use std::io::Write;

use accord_safwk::typed::{Blob, CallError, Listener};
use accord_safwk::Samgr;
use anyhow::{Context, Result};

use crate::{KvDataServiceProxy, KvError, KvObserver, ID};

const USAGE: &str = "usage: kv ls | kv get STORE KEY | kv put STORE KEY VALUE | kv rm STORE KEY | kv dump STORE [PREFIX] | kv watch STORE | kv backup STORE NAME | kv restore STORE NAME | kv backups STORE";

/// Entries per page of `kv dump`.
const PAGE: u32 = 256;

/// What a failed call says, the service's own error first.
fn why(e: CallError<KvError>) -> anyhow::Error {
    match e {
        CallError::Sa(e) => anyhow::anyhow!("{e}"),
        CallError::Ipc(e) => anyhow::anyhow!("data service (SA {ID}): {e}"),
    }
}

/// A command line, checked before samgr is dialled.
enum Cmd<'a> {
    Ls,
    Get(&'a str, &'a str),
    Put(&'a str, &'a str, &'a str),
    Rm(&'a str, &'a str),
    Dump(&'a str, &'a str),
    Watch(&'a str),
    Backup(&'a str, &'a str),
    Restore(&'a str, &'a str),
    Backups(&'a str),
}

fn parse<'a>(rest: &[&'a str]) -> Option<Cmd<'a>> {
    Some(match *rest {
        ["ls"] => Cmd::Ls,
        ["get", store, key] => Cmd::Get(store, key),
        ["put", store, key, value] => Cmd::Put(store, key, value),
        ["rm", store, key] => Cmd::Rm(store, key),
        ["dump", store] => Cmd::Dump(store, ""),
        ["dump", store, prefix] => Cmd::Dump(store, prefix),
        ["watch", store] => Cmd::Watch(store),
        ["backup", store, name] => Cmd::Backup(store, name),
        ["restore", store, name] => Cmd::Restore(store, name),
        ["backups", store] => Cmd::Backups(store),
        _ => return None,
    })
}

/// Runs `kv` with `args` (`args[0]` is the program name).
pub fn main(args: Vec<String>) -> Result<()> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    // A wrong command line needs no samgr.
    let Some(cmd) = parse(&rest) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    accord_safwk::with_samgr(async |samgr: Samgr| -> Result<()> {
        let kv = samgr.get_proxy::<KvDataServiceProxy>(ID).await.with_context(|| format!("data service (SA {ID})"))?;
        let mut out = std::io::stdout().lock();
        match cmd {
            Cmd::Ls => {
                for s in kv.stores().await.map_err(why)? {
                    writeln!(out, "{s}")?;
                }
            }
            Cmd::Get(store, key) => {
                let v = kv.get(store, key).await.map_err(why)?;
                let v = v.map().context("the value")?;
                out.write_all(&v)?;
                if out_is_tty() && !v.ends_with(b"\n") {
                    writeln!(out)?;
                }
            }
            Cmd::Put(store, key, value) => {
                let blob = Blob::new(value.as_bytes().to_vec()).context("the value")?;
                kv.put(store, key, blob).await.map_err(why)?;
            }
            Cmd::Rm(store, key) => {
                if !kv.delete(store, key).await.map_err(why)? {
                    eprintln!("kv: no key {key:?} in {store}");
                    std::process::exit(1);
                }
            }
            Cmd::Dump(store, prefix) => {
                // One result set: the store as it was when the dump began,
                // however long printing takes and whatever is written.
                let (id, count) = kv.result_set(store, prefix).await.map_err(why)?;
                let mut at = 0u64;
                while at < count {
                    let page = kv.result_set_entries(id, at, PAGE).await.map_err(why)?;
                    if page.is_empty() {
                        break;
                    }
                    at += page.len() as u64;
                    for e in &page {
                        writeln!(out, "{}\t{}", e.key, String::from_utf8_lossy(&e.value))?;
                    }
                }
                kv.close_result_set(id).await.map_err(why)?;
            }
            Cmd::Backup(store, name) => kv.backup(store, name).await.map_err(why)?,
            Cmd::Restore(store, name) => {
                let n = kv.restore(store, name).await.map_err(why)?;
                writeln!(out, "{n} keys changed")?;
            }
            Cmd::Backups(store) => {
                for b in kv.backups(store).await.map_err(why)? {
                    writeln!(out, "{b}")?;
                }
            }
            Cmd::Watch(store) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                kv.subscribe(store, Listener::new(Printer(tx).into_remote())).await.map_err(why)?;
                // Said on stderr once the subscription holds, so a script
                // knows when changes start being reported.
                eprintln!("kv: watching {store}");
                loop {
                    tokio::select! {
                        note = rx.recv() => {
                            let Some((store, keys, lost)) = note else { break };
                            if lost > 0 {
                                writeln!(out, "lost {lost}")?;
                            }
                            for k in keys {
                                writeln!(out, "{store}\t{k}")?;
                            }
                            out.flush()?;
                        }
                        () = kv.died() => anyhow::bail!("the data service (SA {ID}) went away"),
                    }
                }
            }
        }
        out.flush()?;
        Ok(())
    })
}

/// `kv watch`'s observer: hands each change to the printing loop.
struct Printer(tokio::sync::mpsc::UnboundedSender<(String, Vec<String>, u32)>);

impl KvObserver for Printer {
    fn on_change(&self, store: String, keys: Vec<String>, lost: u32) {
        let _ = self.0.send((store, keys, lost));
    }
}

fn out_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}
