//! Child processes that cannot outlive the controller.

/// Makes the child receive SIGKILL when the controller dies, even by SIGKILL, so a crashed
/// controller never leaves cluster processes behind. Linux only (prctl PR_SET_PDEATHSIG).
///
/// The signal fires when the *thread* that spawned the child exits; children are spawned from
/// tokio worker threads, which live as long as the runtime, i.e. as long as the run.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}
