//! Reads single values out of the relay's `/metrics` (Prometheus text format).

/// The value of the unlabelled metric `name`, if present.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_name() {
        let text = "# HELP a x\nstagecast_objects_out_total_x 9\nstagecast_objects_out_total 42\n";
        assert_eq!(value(text, "stagecast_objects_out_total"), Some(42.0));
        assert_eq!(value(text, "missing"), None);
    }
}
