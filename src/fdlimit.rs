//! The open-file limit (`RLIMIT_NOFILE`): every connection is a file descriptor, so a server
//! for 100,000 clients (or a bench opening them) needs a limit above the usual soft 1,024.
//! A process may raise its own soft limit up to the hard one without privileges; beyond that
//! only an administrator can help (`ulimit -Hn`, `LimitNOFILE=` in a systemd unit, `fs.nr_open`).

/// The soft and hard limits.
pub fn current() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// What raising the soft limit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit, which only an administrator can raise.
    pub hard: u64,
    /// Whether `wanted` fits.
    pub enough: bool,
}

/// Raises the soft limit to `wanted` open files (never lowers it), as far as the hard limit
/// allows.
pub fn raise_to(wanted: u64) -> std::io::Result<Raised> {
    let (soft, hard) = current()?;
    let target = wanted.min(hard);
    if target > soft {
        let limit = libc::rlimit { rlim_cur: target, rlim_max: hard };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let soft = soft.max(target);
    Ok(Raised { soft, hard, enough: soft >= wanted })
}

/// Raises the soft limit to `wanted` open files, or says why it cannot (the hard limit and
/// what to change, or the error): what both binaries do at start.
pub fn ensure(wanted: u64) -> Result<Raised, String> {
    match raise_to(wanted) {
        Ok(raised) if raised.enough => Ok(raised),
        Ok(raised) => Err(too_low(wanted, &raised)),
        Err(e) => Err(format!("cannot raise the open-file limit: {e}")),
    }
}

/// The message for a limit too low for `wanted` files, naming what to change.
fn too_low(wanted: u64, raised: &Raised) -> String {
    format!(
        "this needs about {wanted} open files, but the hard limit (ulimit -Hn) is {}: raise it \
         (LimitNOFILE= for a systemd service, /etc/security/limits.conf for a login, and \
         fs.nr_open above it); until then at most about {} connections can open",
        raised.hard,
        raised.soft.saturating_sub(FILES_BESIDES_CONNECTIONS)
    )
}

/// Descriptors a process uses besides its connections: stdio, epoll, listeners, a store, logs.
pub const FILES_BESIDES_CONNECTIONS: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_stops_at_the_hard_limit() {
        let (soft, hard) = current().expect("getrlimit");
        let unchanged = raise_to(1).expect("setrlimit");
        assert_eq!((unchanged.soft, unchanged.hard, unchanged.enough), (soft, hard, true));
        if hard < u64::MAX {
            let capped = raise_to(hard.saturating_add(1)).expect("setrlimit");
            assert_eq!((capped.soft, capped.enough), (hard, false));
            assert!(too_low(hard + 1, &capped).contains(&hard.to_string()));
            assert!(ensure(hard + 1).unwrap_err().contains(&hard.to_string()));
            assert_eq!(ensure(1).map(|r| r.soft), Ok(hard), "raised to the hard limit above");
        }
    }
}
