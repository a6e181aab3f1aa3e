//! Fake names and status texts from built-in lists, drawn from the caller's random stream
//! so a seeded run writes the same words every time.

use rand::seq::IndexedRandom;
use rand::Rng;

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Amara",
    "Anders",
    "Aiko",
    "Beatriz",
    "Bjarne",
    "Camille",
    "Carlos",
    "Chen",
    "Chiara",
    "Dagny",
    "Dmitri",
    "Edsger",
    "Elif",
    "Emeka",
    "Esther",
    "Farah",
    "Felix",
    "Fatima",
    "Grace",
    "Gustavo",
    "Hana",
    "Hedy",
    "Ibrahim",
    "Ingrid",
    "Ivan",
    "Jamal",
    "Joan",
    "Jonas",
    "Kai",
    "Katherine",
    "Kenji",
    "Lakshmi",
    "Leslie",
    "Linus",
    "Lucia",
    "Mahmoud",
    "Margaret",
    "Mateo",
    "Mei",
    "Niklaus",
    "Nadia",
    "Noor",
    "Olga",
    "Omar",
    "Priya",
    "Quentin",
    "Radia",
    "Rafael",
    "Rosa",
    "Sana",
    "Sophie",
    "Tariq",
    "Tereza",
    "Tim",
    "Uma",
    "Valentina",
    "Wei",
    "Xavier",
    "Yara",
    "Yusuf",
    "Zanele",
    "Zoltan",
];

const LAST_NAMES: &[&str] = &[
    "Abebe",
    "Andersson",
    "Babbage",
    "Backus",
    "Costa",
    "Dijkstra",
    "Eze",
    "Fernandes",
    "Gupta",
    "Haddad",
    "Hamilton",
    "Hopper",
    "Ivanova",
    "Jansen",
    "Kahn",
    "Kim",
    "Knuth",
    "Kowalski",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Martins",
    "McCarthy",
    "Mensah",
    "Moreau",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Perlman",
    "Petrov",
    "Quispe",
    "Ritchie",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Stroustrup",
    "Tanaka",
    "Thompson",
    "Turing",
    "Urquhart",
    "Vasquez",
    "Wirth",
    "Wong",
    "Yilmaz",
    "Zhang",
    "Zuse",
];

const OPENERS: &[&str] = &[
    "Just",
    "Finally",
    "Honestly,",
    "Today I",
    "Can't believe I",
    "Somehow I",
    "Proud to say I",
    "Quick update: I",
    "Guess who",
    "Note to self: never",
    "Still",
    "Yesterday I",
];

const ACTIONS: &[&str] = &[
    "baked sourdough",
    "fixed a heisenbug",
    "ran a marathon",
    "read a paper on Raft",
    "adopted a cat",
    "repainted the kitchen",
    "learned to juggle",
    "missed the last train",
    "rewrote it in Rust",
    "found my old guitar",
    "planted tomatoes",
    "survived a code review",
    "watched the sunrise",
    "cached the whole internet",
    "got lost in the museum",
    "elected a new leader",
    "invalidated my own cache",
    "made soup for twelve",
];

const CLOSERS: &[&str] = &[
    "",
    "!",
    "!!",
    " :)",
    " — what a day.",
    " #blessed",
    " (again).",
    " Ask me how.",
    " Worth it.",
    " Send help.",
    " 10/10 would do again.",
    " #raft",
    "...",
];

/// A full name: `First Last`.
pub fn full_name<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("{} {}", pick(FIRST_NAMES, rng), pick(LAST_NAMES, rng))
}

/// A short status text.
pub fn status_text<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("{} {}{}", pick(OPENERS, rng), pick(ACTIONS, rng), pick(CLOSERS, rng))
}

fn pick<R: Rng + ?Sized>(list: &'static [&'static str], rng: &mut R) -> &'static str {
    list.choose(rng).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::op_rng;

    #[test]
    fn the_same_seed_gives_the_same_names_and_texts() {
        let words = |seed| {
            let mut rng = op_rng(seed, 3);
            (0..20).map(|_| format!("{} / {}", full_name(&mut rng), status_text(&mut rng))).collect::<Vec<_>>()
        };
        assert_eq!(words(1), words(1));
        assert_ne!(words(1), words(2));
    }

    #[test]
    fn names_and_texts_look_like_names_and_texts() {
        let mut rng = op_rng(9, 0);
        for _ in 0..200 {
            let name = full_name(&mut rng);
            let (first, last) = name.split_once(' ').unwrap();
            assert!(FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last), "{name}");
            let text = status_text(&mut rng);
            assert!(text.len() > 5 && text.len() < 100, "{text}");
        }
    }

    #[test]
    fn draws_cover_the_lists() {
        let mut rng = op_rng(5, 0);
        let names: std::collections::HashSet<String> = (0..2000).map(|_| full_name(&mut rng)).collect();
        assert!(names.len() > 1000, "only {} distinct names", names.len());
    }
}
