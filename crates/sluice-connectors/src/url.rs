//! Connection URLs in messages.

/// Query and keyword names whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "sslpassword",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "auth",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str())
        || key.ends_with("password")
        || key.ends_with("secret")
        || key.ends_with("token")
}

/// The connection string with every secret replaced by `***`, for messages,
/// logs and stored state: the password of `user:password@host` (whatever
/// characters it holds, `/` and `@` included), secret query parameters
/// (`?password=…`, `&sslpassword=…`, `token`, `api_key`, …) and the same
/// keys in keyword form (`host=h password=secret`).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_keywords(url);
    };
    let head = &url[..scheme_end + 3];
    let rest = &url[scheme_end + 3..];
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    // Userinfo ends at the last `@` before the query: a password may hold `/` or `@`.
    let mut out = String::from(head);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `key=value` words (libpq's keyword form) with secret values hidden.
fn redact_keywords(text: &str) -> String {
    if !text.contains('=') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let key = &rest[key_start..eq];
        out.push_str(&rest[..=eq]);
        let value = &rest[eq + 1..];
        // A value is quoted ('…' with \' escapes) or runs to the next space.
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut i = 0;
            let bytes = quoted.as_bytes();
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        if is_secret_key(key) {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("mysql://u:p@ss@h/db"), "mysql://u:***@h/db");
    }

    #[test]
    fn every_form_of_a_secret_is_hidden() {
        // A password holding `/`, `@` and `:`.
        assert_eq!(redact("postgres://u:a/b@c:d@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            redact("postgres://u@h/db?password=hunter2&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact("mysql://h/db?user=u&PASSWORD=x&sslpassword=y"),
            "mysql://h/db?user=u&PASSWORD=***&sslpassword=***"
        );
        assert_eq!(redact("https://h:9200/i?api_key=k1"), "https://h:9200/i?api_key=***");
        assert_eq!(
            redact("host=h user=u password=hunter2 dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(redact("host=h password='a b\\'c' port=5"), "host=h password=*** port=5");
        for secret in ["hunter2", "a/b@c", "k1"] {
            for url in [
                format!("postgres://u:{secret}@h/db"),
                format!("postgres://h/db?password={secret}"),
                format!("password={secret} host=h"),
            ] {
                assert!(!redact(&url).contains(secret), "{url}");
            }
        }
    }
}
