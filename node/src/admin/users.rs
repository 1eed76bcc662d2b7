//! `[admin] token_file`: who may use an admin API that is served beyond
//! loopback, and for what. One line per token: `NAME ROLE TOKEN`, the role
//! `read` (GETs) or `operator` (writes too); `#` starts a comment. With a
//! token file every request needs a token, reads included; the node's own
//! `admin.token` (the CLI's) stays an operator's.

use std::path::Path;
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GET and HEAD.
    Read,
    /// Reads and writes.
    Operator,
}

impl Role {
    /// Its name in the token file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
        }
    }
}

/// One line of the token file.
pub struct User {
    /// Who, as the logs name them.
    pub name: String,
    /// What they may do.
    pub role: Role,
    token: Vec<u8>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User({}, {})", self.name, self.role.as_str())
    }
}

/// The tokens of a token file.
#[derive(Debug)]
pub struct Users(Vec<User>);

/// The shortest token accepted: 32 characters.
const MIN_TOKEN: usize = 32;

impl Users {
    /// Reads `path`; a mistake is named with the file and line.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Users::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    /// The tokens of `text`, or the line (from 1) of its first mistake.
    pub fn parse(text: &str) -> Result<Users, (usize, String)> {
        let mut users: Vec<User> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |why: String| (i + 1, why);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, token] = fields[..] else {
                return Err(at(format!("{line:?}: want NAME ROLE TOKEN")));
            };
            let role = match role {
                "read" => Role::Read,
                "operator" => Role::Operator,
                other => return Err(at(format!("role {other:?}: read or operator"))),
            };
            if token.len() < MIN_TOKEN {
                return Err(at(format!(
                    "{name}'s token is shorter than {MIN_TOKEN} characters"
                )));
            }
            if users.iter().any(|u| u.name == name) {
                return Err(at(format!("{name} has a token already")));
            }
            if users
                .iter()
                .any(|u| bool::from(u.token.ct_eq(token.as_bytes())))
            {
                return Err(at(format!("{name}'s token is another's too")));
            }
            users.push(User {
                name: name.to_string(),
                role,
                token: token.as_bytes().to_vec(),
            });
        }
        if users.is_empty() {
            return Err((1, "no token: a token file names at least one".into()));
        }
        Ok(Users(users))
    }

    /// The user whose token `presented` is. Every token is compared, each
    /// in constant time: how long it takes says nothing of which matched,
    /// nor how much of one.
    pub fn find(&self, presented: &[u8]) -> Option<&User> {
        let mut found = None;
        for u in &self.0 {
            if bool::from(u.token.ct_eq(presented)) {
                found = Some(u);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn tokens_are_found_with_their_role() {
        let u = Users::parse(&format!(
            "# who\ngrafana read {A}\n\nalice operator {B}  # on call\n"
        ))
        .unwrap();
        assert_eq!(
            u.find(A.as_bytes()).map(|u| (u.name.as_str(), u.role)),
            Some(("grafana", Role::Read))
        );
        assert_eq!(u.find(B.as_bytes()).map(|u| u.role), Some(Role::Operator));
        assert!(u.find(&B.as_bytes()[1..]).is_none());
        assert!(u.find(b"").is_none());
    }

    #[test]
    fn mistakes_are_named_by_line() {
        let line = |text: &str| Users::parse(text).unwrap_err();
        assert_eq!(line(&format!("a read {A}\nb admin {B}\n")).0, 2);
        assert!(line(&format!("a read {A}\nb admin {B}\n"))
            .1
            .contains("read or operator"));
        assert_eq!(line("a read short\n").0, 1);
        assert_eq!(line(&format!("a read {A}\na operator {B}\n")).0, 2);
        assert_eq!(line(&format!("a read {A}\nb operator {A}\n")).0, 2);
        assert_eq!(line(&format!("a read\n{B}\n")).0, 1);
        assert!(line("# nothing\n").1.contains("no token"));
    }
}
