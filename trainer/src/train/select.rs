//! Which files a job reads: the format's globs over the dataset's paths.

use super::{Format, TrainError};
use crate::source::Source;

/// `*` and `?` glob matching on whole paths.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The files a format reads, and (for IDX) their pairing.
pub(super) fn select(
    source: &dyn Source,
    format: &Format,
) -> Result<Vec<(usize, usize)>, TrainError> {
    let files = source.files();
    let out: Vec<(usize, usize)> = match format {
        Format::Csv { .. } => files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.path.to_ascii_lowercase().ends_with(".csv"))
            .map(|(i, _)| (i, i))
            .collect(),
        Format::Idx => files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.path.contains("images-idx3-ubyte"))
            .filter_map(|(i, f)| {
                let want = f.path.replace("images-idx3-ubyte", "labels-idx1-ubyte");
                files.iter().position(|g| g.path == want).map(|j| (i, j))
            })
            .collect(),
    };
    if out.is_empty() {
        return Err(TrainError::Config(match format {
            Format::Csv { .. } => "the dataset has no .csv files".into(),
            Format::Idx => {
                "the dataset has no IDX pairs (NAME-images-idx3-ubyte with NAME-labels-idx1-ubyte)"
                    .into()
            }
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("test/*.csv", "test/a.csv"));
        assert!(glob_match("*test*", "data/test-00.csv"));
        assert!(glob_match("t?.csv", "t1.csv"));
        assert!(!glob_match("test/*.csv", "train/a.csv"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
    }
}
