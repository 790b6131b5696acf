//! The compact table every report's `Display` prints.

use std::fmt;

/// Writes `rows` under `header` as aligned columns: the first column to
/// the left, the others (counts) to the right, two spaces apart.
pub fn write_table(
    f: &mut fmt::Formatter<'_>,
    header: &[&str],
    rows: &[Vec<String>],
) -> fmt::Result {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("  {cell:>w$}"));
            }
        }
        writeln!(f, "{}", out.trim_end())
    };
    line(f, &mut header.iter().copied())?;
    for row in rows {
        line(f, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    struct T;
    impl std::fmt::Display for T {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            super::write_table(
                f,
                &["stage", "in", "out"],
                &[
                    vec!["source".into(), "10".into(), "10".into()],
                    vec!["square".into(), "10".into(), "9".into()],
                ],
            )
        }
    }

    #[test]
    fn aligned() {
        assert_eq!(
            T.to_string(),
            "stage   in  out\nsource  10   10\nsquare  10    9\n"
        );
    }
}
