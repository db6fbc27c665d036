//! Process hardening at start. A core file would hold every secret the proxy has resolved
//! (stored credentials, OAuth tokens, session cookies), so the process makes none, and, being
//! non-dumpable, cannot be read through `ptrace` or `/proc/PID/mem` by other processes of the
//! same user.

/// Why the process could not be hardened.
#[derive(Debug, thiserror::Error)]
#[error("cannot disable core dumps ({call}): {source}")]
pub struct HardeningError {
    call: &'static str,
    source: std::io::Error,
}

/// Sets the core file size limit to zero (soft and hard, so nothing can raise it again) and
/// marks the process non-dumpable. Linux only; elsewhere it does nothing.
pub fn disable_core_dumps() -> Result<(), HardeningError> {
    #[cfg(target_os = "linux")]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct we pass and keeps no pointer to it.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
            return Err(HardeningError {
                call: "setrlimit(RLIMIT_CORE, 0)",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: PR_SET_DUMPABLE takes one integer argument and no pointers.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) } != 0 {
            return Err(HardeningError {
                call: "prctl(PR_SET_DUMPABLE, 0)",
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Runs in the test process itself: it only loses the ability to dump core.
    #[test]
    fn after_hardening_the_process_is_not_dumpable_and_its_core_limit_is_zero() {
        disable_core_dumps().expect("hardening succeeds");
        // SAFETY: PR_GET_DUMPABLE takes no arguments and returns the flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }, 0);
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
        assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
    }
}
