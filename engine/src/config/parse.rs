pub fn parse(text: &str) -> super::Checked { let _ = text; todo!("config helper") }
