//! Who holds a node's lease: the instance of its data directory.
//!
//! A node's holder id is a random id kept in `{data_dir}/instance.id`,
//! created on the first start and read on every later one, so a node that
//! restarts on the same data directory (after a crash or `kill -9` too) is
//! the same holder and takes its lease back at once. A node with another
//! data directory is another holder, refused while the lease is live.
//!
//! That is only sound if no two live processes ever share a data directory,
//! so the node holds an exclusive lock (`flock`) on the file for as long as
//! it runs; a second process on the same directory is refused at start-up.
//! The operating system drops the lock when the process ends, however it
//! ends, so a killed node never leaves it behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use persistence::LeaseHolder;

/// The file in the data directory that holds the instance id.
pub const INSTANCE_FILE: &str = "instance.id";

/// Hex digits of an instance id (128 random bits).
const ID_LEN: usize = 32;

/// This process's claim on its data directory: the instance id, locked for
/// as long as the value lives.
#[derive(Debug)]
pub struct Instance {
    /// The id in [`INSTANCE_FILE`].
    id: String,
    /// Host, process and directory, for people reading a refusal.
    description: String,
    /// The open, locked file; dropping it unlocks.
    _lock: Locked,
}

impl Instance {
    /// Locks `{data_dir}/instance.id` (creating the directory and the file
    /// if needed) and reads the instance id from it, writing a new random id
    /// if it holds none.
    ///
    /// # Errors
    ///
    /// If another live process (or another node of this one) holds the lock,
    /// or the file cannot be created, read or written.
    pub fn claim(data_dir: &Path) -> anyhow::Result<Instance> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join(INSTANCE_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut lock = Locked::exclusive(file, &path)?;
        let id = read_or_create_id(lock.file(), &path)?;
        let directory = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        Ok(Instance {
            description: describe(&directory),
            id,
            _lock: lock,
        })
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease holder this instance is.
    pub fn holder(&self) -> LeaseHolder {
        LeaseHolder {
            id: self.id.clone(),
            description: self.description.clone(),
        }
    }
}

/// The id in `file`, or a new one written to it if it holds no valid id.
fn read_or_create_id(file: &mut File, path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let existing = text.trim();
    if is_valid_id(existing) {
        return Ok(existing.to_owned());
    }
    if !existing.is_empty() {
        tracing::warn!(path = %path.display(), "the instance id file holds no valid id; writing a new one");
    }
    let id = new_id()?;
    (|| {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()
    })()
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// True for 32 lowercase hex digits.
fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 128 random bits as lowercase hex.
fn new_id() -> anyhow::Result<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; ID_LEN / 2];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness for the instance id"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `parley {version} on {host}, pid {pid}, data dir {directory}`.
fn describe(directory: &Path) -> String {
    format!(
        "parley {} on {}, pid {}, data dir {}",
        env!("CARGO_PKG_VERSION"),
        host_name(),
        std::process::id(),
        directory.display()
    )
}

/// This machine's host name.
#[cfg(unix)]
fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned())
}

/// This machine's host name.
#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "an unknown host".to_owned())
}

/// An open file with an exclusive lock on it, held until dropped.
#[cfg(unix)]
#[derive(Debug)]
struct Locked(nix::fcntl::Flock<File>);

#[cfg(unix)]
impl Locked {
    /// Takes the lock without waiting.
    fn exclusive(file: File, path: &Path) -> anyhow::Result<Locked> {
        use nix::errno::Errno;
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Locked(lock)),
            Err((_, Errno::EWOULDBLOCK)) => Err(in_use(path)),
            Err((_, errno)) => Err(anyhow::anyhow!(
                "locking {}: {}",
                path.display(),
                errno.desc()
            )),
        }
    }

    /// The locked file.
    fn file(&mut self) -> &mut File {
        &mut self.0
    }
}

/// An open file; without `flock` nothing is locked.
#[cfg(not(unix))]
#[derive(Debug)]
struct Locked(File);

#[cfg(not(unix))]
impl Locked {
    /// Keeps the file open (there is no lock to take).
    fn exclusive(file: File, _path: &Path) -> anyhow::Result<Locked> {
        Ok(Locked(file))
    }

    /// The file.
    fn file(&mut self) -> &mut File {
        &mut self.0
    }
}

/// The error for a data directory another live process runs on.
fn in_use(path: &Path) -> anyhow::Error {
    let directory = path.parent().map(PathBuf::from).unwrap_or_default();
    anyhow::anyhow!(
        "the data directory {} is in use by another running parley node ({} is locked): \
         every node needs a data_dir of its own",
        directory.display(),
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::claim(dir.path()).expect("first claim");
        assert!(is_valid_id(first.id()), "{}", first.id());
        let stored = std::fs::read_to_string(dir.path().join(INSTANCE_FILE)).unwrap();
        assert_eq!(stored.trim(), first.id());
        let id = first.id().to_owned();
        drop(first);
        let again = Instance::claim(dir.path()).expect("claim after the first let go");
        assert_eq!(again.id(), id, "the same directory is the same holder");
    }

    #[test]
    fn other_directories_are_other_holders() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Instance::claim(a.path()).unwrap(),
            Instance::claim(b.path()).unwrap(),
        );
        assert_ne!(a.id(), b.id());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_in_use_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let running = Instance::claim(dir.path()).expect("first claim");
        let err = Instance::claim(dir.path()).expect_err("a second claim while the first lives");
        let message = format!("{err:#}");
        assert!(
            message.contains("in use by another running parley node"),
            "{message}"
        );
        assert!(message.contains("data_dir"), "{message}");
        drop(running);
        Instance::claim(dir.path()).expect("the lock goes with the instance");
    }

    #[test]
    fn a_damaged_id_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(INSTANCE_FILE),
            "not an id at all, and long\n",
        )
        .unwrap();
        let instance = Instance::claim(dir.path()).unwrap();
        assert!(is_valid_id(instance.id()), "{}", instance.id());
        let stored = std::fs::read_to_string(dir.path().join(INSTANCE_FILE)).unwrap();
        assert_eq!(stored, format!("{}\n", instance.id()), "rewritten whole");
    }

    #[test]
    fn the_holder_describes_host_process_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Instance::claim(dir.path()).unwrap().holder();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert!(
            holder
                .description
                .contains(&format!("pid {}", std::process::id())),
            "{}",
            holder.description
        );
        assert!(
            holder
                .description
                .contains(&canonical.display().to_string()),
            "{}",
            holder.description
        );
        assert_eq!(holder.id.len(), ID_LEN);
    }
}
