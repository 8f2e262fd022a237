//! The relay's control decisions as plain data with time passed in: when a lost source
//! is given up ([`resume`]), which upstream a link tries next and how long it waits
//! ([`link_plan`]), and which peer a track is asked of ([`source_choice`]). The tasks in
//! `source.rs` and `upstream.rs` do the I/O and ask these; the tests here need no sockets.

pub mod link_plan;
pub mod resume;
pub mod source_choice;

#[cfg(test)]
mod tests;
