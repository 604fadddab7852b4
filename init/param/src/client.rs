//! A synchronous client of the parameter service.

use std::cell::RefCell;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::proto::{read_frame, write_frame, ErrorKind, Request, Response, ServiceInfo};
use crate::ParamError;

/// One connection to init's parameter service. Requests are answered in
/// order; keep a `Client` around to avoid a connect per call.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// Buffered so a reply's header and body come in with one read.
    reader: RefCell<BufReader<UnixStream>>,
}

fn server_error(kind: ErrorKind, message: String) -> ParamError {
    ParamError::Server { kind, message }
}

impl Client {
    /// Connects to [`crate::socket_path`].
    pub fn connect() -> Result<Client, ParamError> {
        Client::connect_to(&crate::socket_path())
    }

    pub fn connect_to(path: &Path) -> Result<Client, ParamError> {
        let connect_err = |source| ParamError::Connect { path: path.display().to_string(), source };
        let stream = UnixStream::connect(path).map_err(connect_err)?;
        Client::from_stream(stream).map_err(connect_err)
    }

    /// A client over an already connected stream (the server identifies the
    /// caller by the credentials of whoever connected it).
    pub fn from_stream(stream: UnixStream) -> std::io::Result<Client> {
        let reader = RefCell::new(BufReader::new(stream.try_clone()?));
        Ok(Client { stream, reader })
    }

    fn call(&self, req: &Request) -> Result<Response, ParamError> {
        let mut s = &self.stream;
        write_frame(&mut s, req)?;
        let reply = read_frame::<Response>(&mut *self.reader.borrow_mut())?;
        match reply {
            Some(Response::Error { kind, message }) => Err(server_error(kind, message)),
            Some(r) => Ok(r),
            None => Err(ParamError::Protocol("the parameter service closed the connection".into())),
        }
    }

    fn expect_ok(&self, req: &Request) -> Result<(), ParamError> {
        match self.call(req)? {
            Response::Ok => Ok(()),
            other => Err(ParamError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// The value of `name`; `NotFound` (as a server error) when unset.
    pub fn get(&self, name: &str) -> Result<String, ParamError> {
        match self.call(&Request::Get { name: name.to_owned() })? {
            Response::Value { value } => Ok(value),
            other => Err(ParamError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// The value of `name`, or `None` when it is not set.
    pub fn get_opt(&self, name: &str) -> Result<Option<String>, ParamError> {
        match self.get(name) {
            Ok(v) => Ok(Some(v)),
            Err(ParamError::Server { kind: ErrorKind::NotFound, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set(&self, name: &str, value: &str) -> Result<(), ParamError> {
        // Checked here too so the message is immediate and names the limit.
        crate::name::validate_name(name)?;
        crate::name::validate_value(name, value)?;
        self.expect_ok(&Request::Set { name: name.to_owned(), value: value.to_owned() })
    }

    /// `(name, value)` of every readable parameter under `prefix`, sorted.
    /// Asks page by page (each reply fits in a frame).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, ParamError> {
        let mut all: Vec<(String, String)> = Vec::new();
        loop {
            let after = all.last().map(|(k, _)| k.clone());
            match self.call(&Request::List { prefix: prefix.to_owned(), after: after.clone() })? {
                Response::List { entries, more } => {
                    // Each page must start after the last (else the server
                    // is not paging and this would not end).
                    if entries.first().is_some_and(|(k, _)| after.as_ref().is_some_and(|a| k <= a)) || (more && entries.is_empty()) {
                        return Err(ParamError::Protocol("a list page does not move forward".into()));
                    }
                    all.extend(entries);
                    if !more {
                        return Ok(all);
                    }
                }
                other => return Err(ParamError::Protocol(format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Blocks until `name` matches `pattern` (`*` globs) or `timeout`.
    pub fn wait(&self, name: &str, pattern: &str, timeout: Duration) -> Result<(), ParamError> {
        let req = Request::Wait { name: name.to_owned(), pattern: pattern.to_owned(), timeout_ms: timeout.as_millis() as u64 };
        match self.expect_ok(&req) {
            Err(ParamError::Server { kind: ErrorKind::Timeout, .. }) => Err(ParamError::Timeout { name: name.to_owned() }),
            r => r,
        }
    }

    /// Turns this connection into a stream of changes under `prefix`.
    pub fn watch(self, prefix: &str) -> Result<Watcher, ParamError> {
        self.expect_ok(&Request::Watch { prefix: prefix.to_owned() })?;
        Ok(Watcher { client: self })
    }

    /// Writes persistent parameters to disk now (root only).
    pub fn save(&self) -> Result<(), ParamError> {
        self.expect_ok(&Request::Save)
    }

    /// The service's resource counters (root only).
    pub fn stats(&self) -> Result<Vec<(String, u64)>, ParamError> {
        match self.call(&Request::Stats)? {
            Response::Stats { stats } => Ok(stats),
            other => Err(ParamError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Services known to init (all, or `name`), asked page by page.
    pub fn dump_services(&self, name: Option<&str>) -> Result<Vec<ServiceInfo>, ParamError> {
        let mut all = Vec::new();
        loop {
            match self.call(&Request::DumpServices { name: name.map(str::to_owned), skip: all.len() })? {
                Response::Services { services, more } => {
                    if more && services.is_empty() {
                        return Err(ParamError::Protocol("a service page does not move forward".into()));
                    }
                    all.extend(services);
                    if !more {
                        return Ok(all);
                    }
                }
                other => return Err(ParamError::Protocol(format!("unexpected reply {other:?}"))),
            }
        }
    }
}

/// Changes pushed by the server after [`Client::watch`].
#[derive(Debug)]
pub struct Watcher {
    client: Client,
}

impl Iterator for Watcher {
    type Item = Result<(String, String), ParamError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reply = read_frame::<Response>(&mut *self.client.reader.borrow_mut());
        match reply {
            Ok(Some(Response::Changed { name, value })) => Some(Ok((name, value))),
            Ok(Some(Response::Error { kind, message })) => Some(Err(server_error(kind, message))),
            Ok(Some(other)) => Some(Err(ParamError::Protocol(format!("unexpected push {other:?}")))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// `name` from init's shared-memory table (world-readable parameters; no
/// system call after the first use), or `None` when it is not published
/// there (unset, not world-readable, or no table to map).
pub fn published(name: &str) -> Option<String> {
    use crate::area::{AreaReader, Lookup};
    use std::sync::OnceLock;
    static AREA: OnceLock<Option<AreaReader>> = OnceLock::new();
    match AREA.get_or_init(|| AreaReader::open().ok()).as_ref()?.get(name) {
        Lookup::Found(v) => Some(v),
        Lookup::Miss => None,
    }
}

/// Reads `name`: from the shared-memory table when init published it there
/// ([`published`]), else from the parameter service.
pub fn get(name: &str) -> Result<String, ParamError> {
    match published(name) {
        Some(v) => Ok(v),
        None => Client::connect()?.get(name),
    }
}

/// `set` on a fresh connection.
pub fn set(name: &str, value: &str) -> Result<(), ParamError> {
    Client::connect()?.set(name, value)
}

/// `wait` on a fresh connection.
pub fn wait(name: &str, pattern: &str, timeout: Duration) -> Result<(), ParamError> {
    Client::connect()?.wait(name, pattern, timeout)
}
