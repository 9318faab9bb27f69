//! The reference replicated key-value node; see `targets::refnode::server`.

fn main() {
    std::process::exit(targets::refnode::server::main_with_args(
        std::env::args_os().collect(),
    ));
}
