//! Parsing of 1-based layer/head selections such as `1,8` or `1-4,7`.

use crate::error::{Error, Result};
use crate::source::numbered_by_position;

/// Parses a selection of 1-based indices into sorted-as-given, de-duplicated 0-based indices.
/// `None` selects everything. `what` names the axis in messages ("layer", "head").
pub fn parse_selection(spec: Option<&str>, count: usize, what: &str) -> Result<Vec<usize>> {
    let Some(spec) = spec else {
        return Ok((0..count).collect());
    };
    let bad = |msg: String| Error::BadOption(format!("--{what}s {spec}: {msg}"));
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad("empty item".into()));
        }
        let (a, b) = match part.split_once(['-', ':']) {
            Some((a, b)) => (parse_index(a).map_err(&bad)?, parse_index(b).map_err(&bad)?),
            None => {
                let i = parse_index(part).map_err(&bad)?;
                (i, i)
            }
        };
        if a > b {
            return Err(bad(format!("range {a}-{b} is reversed")));
        }
        if b > count {
            let has = match count {
                1 => format!("1 {what}, numbered 1"),
                _ => format!("{count} {what}s, numbered 1-{count}"),
            };
            return Err(bad(format!(
                "{what} {b} is out of range (the input has {has})"
            )));
        }
        for i in a..=b {
            if !out.contains(&(i - 1)) {
                out.push(i - 1);
            }
        }
    }
    Ok(out)
}

/// [`parse_selection`] of layers known by `numbers` (1-based, increasing, one per layer of the
/// input: [`crate::AttentionSource::layer_number`]): the spec names numbers, the result holds
/// positions. Where the numbers are the positions + 1, this is `parse_selection`, messages
/// and all.
pub fn parse_numbered(spec: Option<&str>, numbers: &[usize], what: &str) -> Result<Vec<usize>> {
    if numbered_by_position(numbers) || spec.is_none() {
        return parse_selection(spec, numbers.len(), what);
    }
    let spec = spec.unwrap_or_default();
    let top = numbers.iter().copied().max().unwrap_or(0);
    let wanted = parse_selection(Some(spec), top, what).map_err(|_| {
        Error::BadOption(format!(
            "--{what}s {spec}: the input holds {what}s {} only",
            spans(numbers)
        ))
    })?;
    wanted
        .iter()
        .map(|&w| {
            numbers.iter().position(|&n| n == w + 1).ok_or_else(|| {
                Error::BadOption(format!(
                    "--{what}s {spec}: {what} {} is not in the input, which holds {what}s {} only",
                    w + 1,
                    spans(numbers)
                ))
            })
        })
        .collect()
}

/// Increasing numbers as runs: `2, 5-6`.
pub fn spans(numbers: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &n in numbers {
        match runs.last_mut() {
            Some((_, b)) if n == *b + 1 => *b = n,
            _ => runs.push((n, n)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_index(s: &str) -> std::result::Result<usize, String> {
    let s = s.trim();
    match s.parse::<usize>() {
        Ok(0) => Err("indices start at 1".into()),
        Ok(i) => Ok(i),
        Err(_) => Err(format!("'{s}' is not a positive integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(
            parse_selection(Some("1,8"), 8, "layer").unwrap(),
            vec![0, 7]
        );
        assert_eq!(
            parse_selection(Some("1-3, 5"), 8, "head").unwrap(),
            vec![0, 1, 2, 4]
        );
        assert_eq!(
            parse_selection(Some("2,2,1"), 3, "head").unwrap(),
            vec![1, 0]
        );
        assert_eq!(parse_selection(None, 3, "head").unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn rejects_bad_specs() {
        for spec in ["0", "9", "1-", "3-1", "a", "1,,2", "", "-1", "1-99"] {
            let err = parse_selection(Some(spec), 8, "layer")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("--layers"), "{spec}: {err}");
        }
        let err = parse_selection(Some("2"), 1, "layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(the input has 1 layer, numbered 1)"),
            "{err}"
        );
        let err = parse_selection(Some("9"), 8, "head")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(the input has 8 heads, numbered 1-8)"),
            "{err}"
        );
    }

    #[test]
    fn numbered_layers_are_selected_by_their_numbers() {
        let numbers = [2, 5, 6];
        assert_eq!(
            parse_numbered(None, &numbers, "layer").unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(
            parse_numbered(Some("6,2"), &numbers, "layer").unwrap(),
            vec![2, 0]
        );
        assert_eq!(
            parse_numbered(Some("5-6"), &numbers, "layer").unwrap(),
            vec![1, 2]
        );
        let err = parse_numbered(Some("3"), &numbers, "layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("layer 3 is not in the input, which holds layers 2, 5-6 only"),
            "{err}"
        );
        let err = parse_numbered(Some("9"), &numbers, "layer")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("the input holds layers 2, 5-6 only"), "{err}");
        // numbers that are the positions: parse_selection's messages
        let err = parse_numbered(Some("9"), &[1, 2], "layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(the input has 2 layers, numbered 1-2)"),
            "{err}"
        );
    }
}
