use std::process::ExitCode;

fn main() -> ExitCode {
    keyswitch::main_entry()
}
