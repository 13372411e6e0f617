//! The daemon's error type: every failure that stops `ferryd`, with a
//! message that names the file or setting and says what to do.

use std::path::{Path, PathBuf};

/// Why the daemon (or a command) stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable (the message names the setting and
    /// what to change).
    #[error("{0}")]
    Config(String),
    /// The audit log cannot be opened or appended to.
    #[error("{0}")]
    AuditLog(String),
    /// The policy or one of its content profiles cannot be loaded.
    #[error("{0}")]
    Policy(String),
    /// A daemon thread the caller depends on has stopped.
    #[error("the {0} thread stopped; the log line before this one says why; restart ferryd")]
    ThreadStopped(&'static str),
    /// The operating system refused a new thread.
    #[error("cannot start the {name} thread: {source}; the host is out of threads or memory: check `ulimit -u`, the unit's TasksMax= and free memory")]
    ThreadStart {
        /// Which thread.
        name: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// `ferryctl demo` could not run one of its steps (the message says
    /// which and what to do).
    #[error("demo: {0}")]
    Demo(String),
    /// A batch of uploads could not be made durable together.
    #[error("the upload could not be made durable ({0}); check the queue directory's disk and file system, then push again")]
    GroupCommit(String),
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed; check that getrandom(2) is allowed (a container or seccomp policy may block it)")]
    Random,
    /// A state the daemon's own code should never reach.
    #[error("internal error: {0}; restart ferryd and report this with the log")]
    Internal(String),
    /// `ferryctl bench` could not run or its run went wrong.
    #[error("bench: {0}")]
    Bench(String),
    /// Configuration file error (located).
    #[error("{0}")]
    ConfigFile(#[from] crate::config::ConfigError),
    /// Key files.
    #[error("{0}")]
    Keys(#[from] ferry_keys::KeyError),
    /// Certificates, keys or CRLs outside one plane's setup.
    #[error("TLS certificates: {0}")]
    Certs(#[from] ferry_certs::CertError),
    /// Certificates, keys or CRLs of one HTTPS plane (`ingest`, `admin`).
    #[error("{plane} TLS: {source}")]
    Tls {
        /// Which plane's files.
        plane: &'static str,
        /// What is wrong with them.
        source: Box<ferry_certs::CertError>,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] crate::state::store::StoreError),
    /// The outbox failed.
    #[error("{0}")]
    Outbox(#[from] crate::state::outbox::OutboxError),
    /// The UDP transport failed.
    #[error("{0}")]
    Udp(#[from] crate::link::udp::UdpError),
    /// The control socket failed.
    #[error("{0}")]
    Control(#[from] crate::admin::socket::ControlError),
    /// The protocol sender refused its configuration or a package.
    #[error("{0}")]
    Sender(#[from] ferry_protocol::sender::SenderError),
    /// The persisted replay window is unreadable.
    #[error("{0}")]
    Replay(#[from] ferry_protocol::replay::ReplayStateError),
    /// A crypto suite could not be set up.
    #[error("{0}")]
    Crypto(#[from] ferry_protocol::CryptoError),
    /// A queued package cannot be processed.
    #[error("package {id}: {what}")]
    Package {
        /// Package id.
        id: String,
        /// What is wrong.
        what: String,
    },
    /// Another thread panicked while holding a lock.
    #[error("internal lock poisoned by a panicked thread; restart ferryd")]
    Poisoned,
}

impl DaemonError {
    /// Maps a thread-spawn error for the thread called `name`.
    pub fn thread_start(name: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
        move |source| DaemonError::ThreadStart { name, source }
    }

    /// Maps an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
        move |source| DaemonError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
