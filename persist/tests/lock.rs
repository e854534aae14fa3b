//! The data directory lock across real processes: a second process is refused with the
//! holder's pid, and a holder killed with SIGKILL leaves no stale lock.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use persist::{DirLock, Error};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_process_is_told_the_holders_pid_and_kill_9_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg("--lock")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the lock holder"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let holder = child.0.id();
    match DirLock::acquire(&dir) {
        Err(Error::Locked { pid, path }) => {
            assert_eq!(pid, Some(holder));
            let msg = Error::Locked { pid, path }.to_string();
            assert!(
                msg.contains(&format!("locked by process {holder}")),
                "{msg}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    child.0.kill().unwrap(); // SIGKILL: no cleanup in the child
    child.0.wait().unwrap();
    let lock = DirLock::acquire(&dir).expect("the kernel released the dead holder's lock");
    let pid: u32 = std::fs::read_to_string(lock.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, std::process::id());
}
