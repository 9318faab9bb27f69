fn main() {
    // A panic is a bug in splitbrain, not a user mistake: unwinding runs every guard (the
    // cluster is stopped, faults healed), then the process exits 255 as the docs promise.
    let code = std::panic::catch_unwind(harness::cli::main).unwrap_or(harness::cli::exit::CRASH);
    std::process::exit(code);
}
