//! Everything that knows about Claude Code: its settings file, what keyswitch wires into it,
//! the StopFailure hook's input, and which session was handed which key.

pub mod command_path;
pub mod hook_entry;
pub mod hook_input;
pub mod install_record;
pub mod json_doc;
pub mod live;
pub mod no_proxy_setting;
pub mod process_tree;
pub mod project_env;
pub mod sessions;
pub mod settings_change;
pub mod settings_file;
pub mod slot;
pub mod wiring;
