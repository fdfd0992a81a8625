//! `keyswitch move`: reorder; position 1 is the primary.

use anyhow::Result;

use super::Context;
use crate::error::refuse;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: &str, position: &str) -> Result<()> {
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let from = pool.resolve(name)?;
    let count = pool.config().keys.len();
    let to = parse_position(position, count)?;
    let moved = pool.key(from).name.clone();
    let switched_to = pool.move_key(from, to, now)?;
    super::settle(&mut pool, now)?;
    say!(
        "keyswitch: {moved} is now key {to}{}",
        if to == 1 { ", the primary" } else { "" }
    );
    if let Some(to) = switched_to {
        say!("keyswitch: now handing out {to}");
    }
    Ok(())
}

/// A 1-based position among `count` keys.
fn parse_position(position: &str, count: usize) -> Result<usize> {
    let number: usize = position.trim().parse().map_err(|_| {
        refuse(format!(
            "position '{position}' is not a number: give a number from 1 to {count} (1 is the primary)"
        ))
    })?;
    if !(1..=count).contains(&number) {
        return Err(refuse(format!(
            "position {number} is out of range: give a number from 1 to {count} (1 is the primary)"
        )));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_not_a_number_and_a_big_number_is_out_of_range() {
        let word = parse_position("x", 2).unwrap_err().to_string();
        assert!(word.contains("not a number"), "{word}");
        let big = parse_position("3", 2).unwrap_err().to_string();
        assert!(big.contains("out of range"), "{big}");
        let negative = parse_position("-1", 2).unwrap_err().to_string();
        assert!(negative.contains("1 to 2"), "{negative}");
        assert_eq!(parse_position(" 2 ", 2).unwrap(), 2);
    }
}
