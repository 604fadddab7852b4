//! A headless compositor on a thread of its own, as every compositor test
//! runs it: its socket in a temporary directory, work sent to it as
//! closures run between dispatches, stopped and joined on drop (a panic on
//! it fails the test).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use accord_compositor::{Compositor, SocketConfig};

use super::DEADLINE;

type Job = Box<dyn FnOnce(&mut Compositor) + Send>;

pub struct CompositorThread {
    pub dir: tempfile::TempDir,
    pub socket_name: String,
    jobs: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CompositorThread {
    /// A `width` x `height` headless compositor listening on `socket_name`.
    pub fn start(width: u32, height: u32, socket_name: &str) -> CompositorThread {
        Self::start_in(width, height, tempfile::tempdir().expect("temp dir"), socket_name)
    }

    /// The same, its socket in `dir` (one a stopped compositor left: see
    /// [`CompositorThread::stop`]).
    pub fn start_in(width: u32, height: u32, dir: tempfile::TempDir, socket_name: &str) -> CompositorThread {
        let config = SocketConfig { dir: dir.path().to_path_buf(), name: socket_name.into() };
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, incoming) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut compositor = match Compositor::headless(width, height, &config) {
                Ok(c) => c,
                Err(err) => {
                    let _ = ready_tx.send(Err(err.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while !thread_stop.load(Ordering::SeqCst) {
                compositor.dispatch(Some(Duration::from_millis(5))).expect("dispatch");
                while let Ok(job) = incoming.try_recv() {
                    job(&mut compositor);
                }
            }
        });
        match ready_rx.recv_timeout(DEADLINE).expect("compositor thread did not start") {
            Ok(()) => {}
            Err(err) => panic!("compositor: {err}"),
        }
        CompositorThread { dir, socket_name: socket_name.into(), jobs, stop, thread: Some(thread) }
    }

    /// The socket's full path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(&self.socket_name)
    }

    /// Runs `f` on the compositor's thread (between two dispatches) and
    /// returns what it returns.
    pub fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Compositor) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs.send(job).expect("compositor thread gone (panicked?)");
        rx.recv_timeout(DEADLINE).expect("the compositor thread did not answer (panicked or hung)")
    }

    /// Stops the compositor (its socket goes, its clients are cut off)
    /// and gives back its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Whether the compositor's thread has ended (a panic).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for CompositorThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the compositor thread panicked");
            }
        }
    }
}
