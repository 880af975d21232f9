//! Plain-text tables as patronictl prints them (`+---+` borders, an
//! optional title in the top border), and tab-separated output.

/// Render `cells` under `headers`; columns listed in `right` are
/// right-aligned (numbers). Every line has the same width.
pub fn render(
    title: Option<&str>,
    headers: &[String],
    cells: &[Vec<String>],
    right: &[usize],
) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let sep = |title: Option<&str>| {
        let mut line: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+";
        if let Some(t) = title {
            let t = format!("+ {t} ");
            if t.chars().count() < line.chars().count() {
                line.replace_range(..t.len(), &t);
            } else {
                line = t;
            }
        }
        line
    };
    let row_line = |vals: &[String]| {
        let mut s = String::new();
        for (i, w) in widths.iter().copied().enumerate() {
            let v = vals.get(i).map(String::as_str).unwrap_or("");
            let pad = w.saturating_sub(v.chars().count());
            if right.contains(&i) {
                s += &format!("| {}{v} ", " ".repeat(pad));
            } else {
                s += &format!("| {v}{} ", " ".repeat(pad));
            }
        }
        s + "|"
    };
    let mut out = vec![sep(title), row_line(headers), sep(None)];
    out.extend(cells.iter().map(|c| row_line(c)));
    out.push(sep(None));
    out.join("\n") + "\n"
}

/// Tab-separated values: a header line, then one line per row.
pub fn tsv(headers: &[String], cells: &[Vec<String>]) -> String {
    let mut out = headers.join("\t") + "\n";
    for row in cells {
        out += &(row.join("\t") + "\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_with_title() {
        let h = vec!["A".to_owned(), "Num".to_owned()];
        let c = vec![vec!["xyz".to_owned(), "5".to_owned()]];
        let t = render(Some("T"), &h, &c, &[1]);
        assert_eq!(
            t,
            "+ T --+-----+\n| A   | Num |\n+-----+-----+\n| xyz |   5 |\n+-----+-----+\n"
        );
        assert_eq!(tsv(&h, &c), "A\tNum\nxyz\t5\n");
    }

    #[test]
    fn long_title_replaces_border() {
        let h = vec!["A".to_owned()];
        let t = render(Some("a long title"), &h, &[], &[]);
        assert!(t.starts_with("+ a long title \n"), "{t}");
    }
}
