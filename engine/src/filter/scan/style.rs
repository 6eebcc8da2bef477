//! HTML.pm's text-style stack: the font size and the text and background
//! colours in effect at each piece of an HTML part's text, as SpamAssassin
//! 4.0 tracks them. It gives HTMLEval's `max_size` (`html_range`) and the
//! `font_low_contrast` and `font_invalid_color` tests (`html_test`).
//!
//! SpamAssassin's quirks are kept, since the point is to fire where it fires:
//!
//! - Only the attributes HTML.pm reads per tag count (`<font color>`,
//!   `<body text>`, `style` on `table`, `tr`, `td`, `th`, `span`, `p`, `div`
//!   and `a`).
//! - A `bgcolor` attribute changes nothing: HTML.pm 4.0 rewrites it to hex
//!   and never copies it into the style. Only a `style` sets the background,
//!   so white text on `<body bgcolor=black>` is white on white.
//! - Colours are HTML.pm's strings (`#rrggbb`, `invalid`, or odder ones such
//!   as `#` from an empty `#`), compared as HTML.pm compares them: the last
//!   six characters equal, or a brightness-weighted distance under 12.

use super::evals::{attribute, perl_space};

/// One entry of the stack.
#[derive(Debug, Clone)]
struct Style {
    tag: &'static str,
    size: i64,
    fg: String,
    bg: String,
}

/// The text-style stack of one HTML part and what its text showed.
#[derive(Debug, Clone)]
pub(super) struct TextStyle {
    stack: Vec<Style>,
    basefont: i64,
    /// HTML.pm's `max_size`: the largest size of a style that carries one
    /// of the attributes HTML.pm reads for its tag (`<big>` and `<small>`
    /// alone never raise it).
    pub max: i64,
    /// Visible text was drawn in a colour too close to its background.
    pub low_contrast: bool,
    /// Visible text was drawn with an unparseable text or background colour.
    pub invalid_color: bool,
}

/// The text-style elements (`th` is read as `td`).
const STYLED: [&str; 14] = [
    "body", "font", "table", "tr", "th", "td", "big", "small", "basefont", "marquee", "span", "p",
    "div", "a",
];

/// Pushes beyond this depth are dropped (HTML.pm has no bound; a hostile
/// part could nest without end).
const MAX_DEPTH: usize = 256;

impl Default for TextStyle {
    fn default() -> Self {
        Self {
            stack: vec![Style {
                tag: "default",
                size: 3,
                fg: "#000000".to_owned(),
                bg: "#ffffff".to_owned(),
            }],
            basefont: 3,
            max: 3,
            low_contrast: false,
            invalid_color: false,
        }
    }
}

impl TextStyle {
    /// The attributes HTML.pm reads per text-style element.
    fn ok_attributes(tag: &str) -> &'static [&'static str] {
        match tag {
            "basefont" | "font" => &["color", "face", "size"],
            "body" => &["text", "bgcolor", "link", "alink", "vlink", "background"],
            "marquee" => &["bgcolor", "background"],
            "table" | "td" | "tr" => &["bgcolor", "style"],
            "span" | "p" | "div" | "a" => &["style"],
            _ => &[],
        }
    }

    /// A start or end tag (`name` in lower case, `attrs` the text after it).
    pub fn tag(&mut self, name: &str, closing: bool, attrs: &str) {
        let Some(&tag) = STYLED.iter().find(|t| **t == name) else {
            return;
        };
        let tag = if tag == "th" { "td" } else { tag };
        if closing {
            if tag != "body" && self.stack.iter().any(|s| s.tag == tag) {
                while let Some(s) = self.stack.pop() {
                    if s.tag == tag {
                        break;
                    }
                }
            }
            return;
        }
        if tag == "basefont" {
            if let Some(n) = attribute(attrs, "size").and_then(|v| leading(&v, false)) {
                self.basefont = n;
                return;
            }
        }
        if (tag == "td" || tag == "tr") && self.stack.iter().any(|s| s.tag == tag) {
            while let Some(top) = self.stack.last() {
                let pops = matches!(
                    (tag, top.tag),
                    ("td", "font" | "td") | ("tr", "font" | "td" | "tr")
                );
                if !pops {
                    break;
                }
                self.stack.pop();
            }
        }
        let Some(parent) = self.stack.last() else {
            return;
        };
        let mut new = Style {
            tag,
            ..parent.clone()
        };
        match tag {
            "big" => new.size += 1,
            "small" => new.size -= 1,
            _ => {
                let mut styled = false;
                for name in Self::ok_attributes(tag) {
                    let Some(v) = attribute(attrs, name) else {
                        continue;
                    };
                    styled = true;
                    match *name {
                        "text" | "color" => new.fg = name_to_rgb(&v),
                        "size" => {
                            if let Some(n) = leading(&v, true) {
                                new.size = self.basefont + n;
                            } else if let Some(n) = leading(&v, false) {
                                new.size = n;
                            }
                        }
                        "style" => apply_css(&mut new, &parent.bg, &v),
                        _ => {}
                    }
                }
                if styled {
                    self.max = self.max.max(new.size);
                }
            }
        }
        if self.stack.len() < MAX_DEPTH {
            self.stack.push(new);
        }
    }

    /// A piece of text (between two pieces of markup, outside `<script>`
    /// and `<style>`), drawn in the style on top of the stack: HTML.pm's
    /// `html_font_invisible` for a piece with anything but white space.
    pub fn text(&mut self, text: &str) {
        if self.low_contrast && self.invalid_color {
            return;
        }
        let Some(top) = self.stack.last() else {
            return;
        };
        let low = low_contrast(&top.fg, &top.bg);
        let invalid = !low && (top.fg == "invalid" || top.bg == "invalid");
        if (low && !self.low_contrast || invalid && !self.invalid_color) && visible(text) {
            self.low_contrast |= low;
            self.invalid_color |= invalid;
        }
    }
}

/// The leading integer of an attribute value (`signed`: only with a `+` or
/// `-` sign), as HTML.pm reads `size`.
fn leading(v: &str, signed: bool) -> Option<i64> {
    let v = v.trim_start();
    let (sign, digits) = match v.as_bytes().first() {
        Some(b'+') if signed => (1, &v[1..]),
        Some(b'-') if signed => (-1, &v[1..]),
        _ if signed => return None,
        _ => (1, v),
    };
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    (n > 0).then(|| sign * digits[..n.min(9)].parse::<i64>().unwrap_or(0))
}

/// Text with anything but white space (HTML.pm: `[ \t\n\r\f\x0b]` and the
/// no-break space), after character references are decoded.
fn visible(text: &str) -> bool {
    let shows = |s: &str| {
        s.chars()
            .any(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b' | '\u{a0}'))
    };
    if text.contains('&') {
        shows(&crate::filter::mime::decode_entities(text))
    } else {
        shows(text)
    }
}

/// HTML.pm's test for text hard to see: the colours' last six characters
/// are equal, or both are `#rrggbb` and their distance, weighted by how
/// bright each channel looks, is under 12 (of at most 191).
fn low_contrast(fg: &str, bg: &str) -> bool {
    fn last6(s: &str) -> &str {
        &s[s.char_indices().rev().nth(5).map_or(0, |(i, _)| i)..]
    }
    if last6(fg) == last6(bg) {
        return true;
    }
    let (Some(a), Some(b)) = (rgb(fg), rgb(bg)) else {
        return false;
    };
    let d = |i: usize, w: f64| w * (f64::from(a[i]) - f64::from(b[i]));
    let distance = (d(0, 0.2126).powi(2) + d(1, 0.7152).powi(2) + d(2, 0.0722).powi(2)).sqrt();
    distance < 12.0
}

/// `#?rrggbb` in lower-case hex, as three channels.
fn rgb(s: &str) -> Option<[u8; 3]> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let h = s.strip_prefix('#').unwrap_or(s);
    if h.len() != 6
        || !h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let ch = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([ch(0)?, ch(2)?, ch(4)?])
}

/// The value HTML.pm captures after a CSS property's colon with
/// `\s*(.+?)\s*$`, where `.` stops at a newline. `None` when it does not
/// match; `Some("")` for a value of white space only (HTML.pm captures one
/// white-space character, which parses as no colour).
fn css_value(rest: &str) -> Option<&str> {
    let v = rest.trim_start_matches(perl_space);
    if v.is_empty() {
        return rest.chars().any(|c| c != '\n').then_some("");
    }
    let v = v.trim_end_matches(perl_space);
    (!v.contains('\n')).then_some(v)
}

/// A `style` attribute's colours, as HTML.pm reads them: `color` and
/// `background-color` (a named, hex or `rgb()` colour; `inherit` keeps the
/// parent's; `transparent` is the parent's background, or for the text, the
/// new background), and the first colour of `background`'s bottom layer.
fn apply_css(new: &mut Style, parent_bg: &str, style: &str) {
    let mut fg_transparent = false;
    let mut bg_transparent = false;
    for part in style.split(';') {
        let lower = part.to_ascii_lowercase();
        let trimmed = lower.trim_start_matches(perl_space);
        let (background, rest) = if let Some(r) = trimmed.strip_prefix("background-color:") {
            (true, Some(r))
        } else if let Some(r) = trimmed.strip_prefix("color:") {
            (false, Some(r))
        } else {
            (false, None)
        };
        if let Some(value) = rest.and_then(css_value) {
            let value = strip_important(value);
            let (slot, transparent) = if background {
                (&mut new.bg, &mut bg_transparent)
            } else {
                (&mut new.fg, &mut fg_transparent)
            };
            if value.contains("rgb") {
                *slot = css_rgb(value);
                *transparent = false;
            } else if value == "inherit" {
            } else if value == "transparent" {
                *transparent = true;
            } else {
                *slot = name_to_rgb(value);
                *transparent = false;
            }
            continue;
        }
        // `background:` is matched case-sensitively by HTML.pm.
        let shorthand = part
            .trim_start_matches(perl_space)
            .strip_prefix("background:")
            .and_then(css_value);
        if let Some(value) = shorthand {
            let layers = css_background_layers(&value.to_ascii_lowercase());
            if let Some(color) = layers.last().and_then(|bottom| {
                bottom
                    .iter()
                    .map(|v| name_to_rgb(v))
                    .find(|c| c != "invalid")
            }) {
                new.bg = color;
                bg_transparent = false;
            }
        }
    }
    if bg_transparent {
        new.bg = parent_bg.to_owned();
    }
    if fg_transparent {
        new.fg.clone_from(&new.bg);
    }
}

/// HTML.pm's `s/\s*!\s*important$//`.
fn strip_important(v: &str) -> &str {
    let Some(rest) = v.strip_suffix("important") else {
        return v;
    };
    let rest = rest.trim_end_matches(perl_space);
    match rest.strip_suffix('!') {
        Some(r) => r.trim_end_matches(perl_space),
        None => v,
    }
}

/// A style colour containing `rgb`: HTML.pm keeps its digits and commas and
/// reads the first three numbers, capped at 255 (a missing one is 0).
fn css_rgb(v: &str) -> String {
    let kept: String = v
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == ',')
        .collect();
    let mut channels = kept.split(',').map(|n| {
        if n.is_empty() {
            0
        } else {
            n.parse::<u64>().unwrap_or(u64::MAX).min(255)
        }
    });
    let mut c = [0u64; 3];
    for slot in &mut c {
        *slot = channels.next().unwrap_or(0);
    }
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// HTML.pm's `parse_css_background`: the layers of a `background` value
/// (split at top-level commas), each a list of its space-separated values,
/// with parentheses and quotes kept whole.
fn css_background_layers(v: &str) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut token = String::new();
    // 0: plain; b'(': in parentheses; b'"' or b'\'': in quotes.
    let mut stack: Vec<u8> = Vec::new();
    let mut state = 0u8;
    for ch in v.chars() {
        match state {
            0 => match ch {
                ' ' => {
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                }
                ',' => {
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                    layers.push(std::mem::take(&mut tokens));
                }
                '(' | '"' | '\'' => {
                    token.push(ch);
                    stack.push(state);
                    state = ch as u8;
                }
                _ => token.push(ch),
            },
            b'(' => {
                token.push(ch);
                match ch {
                    ')' => {
                        tokens.push(std::mem::take(&mut token));
                        state = stack.pop().unwrap_or(0);
                    }
                    '"' | '\'' => {
                        stack.push(state);
                        state = ch as u8;
                    }
                    _ => {}
                }
            }
            q => {
                token.push(ch);
                if ch as u32 == u32::from(q) {
                    state = stack.pop().unwrap_or(0);
                }
            }
        }
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    if !tokens.is_empty() {
        layers.push(tokens);
    }
    layers
}

/// HTML.pm's `name_to_rgb`: a named colour, `#` and hex digits (cut to six
/// or three, padded to a multiple of three, three doubled), or
/// `rgb(r, g, b)` in numbers or per cent, as `#rrggbb`; anything else is
/// `invalid` (hex digits without the `#` included).
pub(super) fn name_to_rgb(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let color = lower.trim_matches(perl_space);
    if let Some(hex) = named_color(color) {
        return format!("#{hex:06x}");
    }
    let hexish = color.bytes().all(|b| b == b'#' || b.is_ascii_hexdigit());
    if !hexish && !contains_rgb_call(color) {
        return "invalid".to_owned();
    }
    let mut color = color.to_owned();
    if let Some([r, g, b]) = rgb_call(&color, true) {
        // int($n/100*255)
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let pct = |n: u64| (n as f64 / 100.0 * 255.0) as u64;
        color = format!("#{}{}{}", dec2hex(pct(r)), dec2hex(pct(g)), dec2hex(pct(b)));
    }
    if let Some([r, g, b]) = rgb_call(&color, false) {
        color = format!("#{}{}{}", dec2hex(r), dec2hex(g), dec2hex(b));
    }
    if !color.starts_with('#') {
        return "invalid".to_owned();
    }
    let mut hex: String = color.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() > 6 {
        hex.truncate(6);
    }
    if hex.len() > 3 && hex.len() < 6 {
        hex.truncate(3);
    }
    while !hex.len().is_multiple_of(3) {
        hex.push('0');
    }
    if hex.len() == 3 {
        hex = hex.chars().flat_map(|c| [c, c]).collect();
    }
    format!("#{hex}")
}

/// HTML.pm's `dec2hex`: lower-case hex, two digits at least.
fn dec2hex(n: u64) -> String {
    format!("{n:02x}")
}

/// `rgb\([\d%, ]*\)` somewhere in `s`.
fn contains_rgb_call(s: &str) -> bool {
    s.match_indices("rgb(").any(|(at, _)| {
        s[at + 4..]
            .chars()
            .find(|c| !(c.is_ascii_digit() || *c == '%' || *c == ',' || *c == ' '))
            == Some(')')
    })
}

/// The first `rgb(R, G, B)` in `s` (`per_cent`: `rgb(R%, G%, B%)`), as
/// HTML.pm's patterns read it: no space before a comma, any after it.
fn rgb_call(s: &str, per_cent: bool) -> Option<[u64; 3]> {
    s.match_indices("rgb(").find_map(|(at, _)| {
        let mut rest = &s[at + 4..];
        let mut out = [0u64; 3];
        for (i, slot) in out.iter_mut().enumerate() {
            if i > 0 {
                rest = rest.strip_prefix(',')?.trim_start_matches(perl_space);
            }
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            *slot = rest[..n].parse::<u64>().unwrap_or(u64::MAX);
            rest = &rest[n..];
            if per_cent {
                rest = rest.strip_prefix('%')?;
            }
        }
        rest.trim_start_matches(perl_space)
            .starts_with(')')
            .then_some(out)
    })
}

/// The 147 named colours of CSS Color Module Level 3 (HTML.pm's table).
fn named_color(name: &str) -> Option<u32> {
    NAMED_COLORS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| NAMED_COLORS[i].1)
}

/// Sorted by name, for [`named_color`].
const NAMED_COLORS: [(&str, u32); 147] = [
    ("aliceblue", 0xf0f8ff),
    ("antiquewhite", 0xfaebd7),
    ("aqua", 0x00ffff),
    ("aquamarine", 0x7fffd4),
    ("azure", 0xf0ffff),
    ("beige", 0xf5f5dc),
    ("bisque", 0xffe4c4),
    ("black", 0x000000),
    ("blanchedalmond", 0xffebcd),
    ("blue", 0x0000ff),
    ("blueviolet", 0x8a2be2),
    ("brown", 0xa52a2a),
    ("burlywood", 0xdeb887),
    ("cadetblue", 0x5f9ea0),
    ("chartreuse", 0x7fff00),
    ("chocolate", 0xd2691e),
    ("coral", 0xff7f50),
    ("cornflowerblue", 0x6495ed),
    ("cornsilk", 0xfff8dc),
    ("crimson", 0xdc143c),
    ("cyan", 0x00ffff),
    ("darkblue", 0x00008b),
    ("darkcyan", 0x008b8b),
    ("darkgoldenrod", 0xb8860b),
    ("darkgray", 0xa9a9a9),
    ("darkgreen", 0x006400),
    ("darkgrey", 0xa9a9a9),
    ("darkkhaki", 0xbdb76b),
    ("darkmagenta", 0x8b008b),
    ("darkolivegreen", 0x556b2f),
    ("darkorange", 0xff8c00),
    ("darkorchid", 0x9932cc),
    ("darkred", 0x8b0000),
    ("darksalmon", 0xe9967a),
    ("darkseagreen", 0x8fbc8f),
    ("darkslateblue", 0x483d8b),
    ("darkslategray", 0x2f4f4f),
    ("darkslategrey", 0x2f4f4f),
    ("darkturquoise", 0x00ced1),
    ("darkviolet", 0x9400d3),
    ("deeppink", 0xff1493),
    ("deepskyblue", 0x00bfff),
    ("dimgray", 0x696969),
    ("dimgrey", 0x696969),
    ("dodgerblue", 0x1e90ff),
    ("firebrick", 0xb22222),
    ("floralwhite", 0xfffaf0),
    ("forestgreen", 0x228b22),
    ("fuchsia", 0xff00ff),
    ("gainsboro", 0xdcdcdc),
    ("ghostwhite", 0xf8f8ff),
    ("gold", 0xffd700),
    ("goldenrod", 0xdaa520),
    ("gray", 0x808080),
    ("green", 0x008000),
    ("greenyellow", 0xadff2f),
    ("grey", 0x808080),
    ("honeydew", 0xf0fff0),
    ("hotpink", 0xff69b4),
    ("indianred", 0xcd5c5c),
    ("indigo", 0x4b0082),
    ("ivory", 0xfffff0),
    ("khaki", 0xf0e68c),
    ("lavender", 0xe6e6fa),
    ("lavenderblush", 0xfff0f5),
    ("lawngreen", 0x7cfc00),
    ("lemonchiffon", 0xfffacd),
    ("lightblue", 0xadd8e6),
    ("lightcoral", 0xf08080),
    ("lightcyan", 0xe0ffff),
    ("lightgoldenrodyellow", 0xfafad2),
    ("lightgray", 0xd3d3d3),
    ("lightgreen", 0x90ee90),
    ("lightgrey", 0xd3d3d3),
    ("lightpink", 0xffb6c1),
    ("lightsalmon", 0xffa07a),
    ("lightseagreen", 0x20b2aa),
    ("lightskyblue", 0x87cefa),
    ("lightslategray", 0x778899),
    ("lightslategrey", 0x778899),
    ("lightsteelblue", 0xb0c4de),
    ("lightyellow", 0xffffe0),
    ("lime", 0x00ff00),
    ("limegreen", 0x32cd32),
    ("linen", 0xfaf0e6),
    ("magenta", 0xff00ff),
    ("maroon", 0x800000),
    ("mediumaquamarine", 0x66cdaa),
    ("mediumblue", 0x0000cd),
    ("mediumorchid", 0xba55d3),
    ("mediumpurple", 0x9370db),
    ("mediumseagreen", 0x3cb371),
    ("mediumslateblue", 0x7b68ee),
    ("mediumspringgreen", 0x00fa9a),
    ("mediumturquoise", 0x48d1cc),
    ("mediumvioletred", 0xc71585),
    ("midnightblue", 0x191970),
    ("mintcream", 0xf5fffa),
    ("mistyrose", 0xffe4e1),
    ("moccasin", 0xffe4b5),
    ("navajowhite", 0xffdead),
    ("navy", 0x000080),
    ("oldlace", 0xfdf5e6),
    ("olive", 0x808000),
    ("olivedrab", 0x6b8e23),
    ("orange", 0xffa500),
    ("orangered", 0xff4500),
    ("orchid", 0xda70d6),
    ("palegoldenrod", 0xeee8aa),
    ("palegreen", 0x98fb98),
    ("paleturquoise", 0xafeeee),
    ("palevioletred", 0xdb7093),
    ("papayawhip", 0xffefd5),
    ("peachpuff", 0xffdab9),
    ("peru", 0xcd853f),
    ("pink", 0xffc0cb),
    ("plum", 0xdda0dd),
    ("powderblue", 0xb0e0e6),
    ("purple", 0x800080),
    ("red", 0xff0000),
    ("rosybrown", 0xbc8f8f),
    ("royalblue", 0x4169e1),
    ("saddlebrown", 0x8b4513),
    ("salmon", 0xfa8072),
    ("sandybrown", 0xf4a460),
    ("seagreen", 0x2e8b57),
    ("seashell", 0xfff5ee),
    ("sienna", 0xa0522d),
    ("silver", 0xc0c0c0),
    ("skyblue", 0x87ceeb),
    ("slateblue", 0x6a5acd),
    ("slategray", 0x708090),
    ("slategrey", 0x708090),
    ("snow", 0xfffafa),
    ("springgreen", 0x00ff7f),
    ("steelblue", 0x4682b4),
    ("tan", 0xd2b48c),
    ("teal", 0x008080),
    ("thistle", 0xd8bfd8),
    ("tomato", 0xff6347),
    ("turquoise", 0x40e0d0),
    ("violet", 0xee82ee),
    ("wheat", 0xf5deb3),
    ("white", 0xffffff),
    ("whitesmoke", 0xf5f5f5),
    ("yellow", 0xffff00),
    ("yellowgreen", 0x9acd32),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_colors_are_sorted_and_unique() {
        assert!(NAMED_COLORS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(named_color("white"), Some(0xffffff));
        assert_eq!(named_color("lightgoldenrodyellow"), Some(0xfafad2));
        assert_eq!(named_color("rebeccapurple"), None);
    }

    #[test]
    fn name_to_rgb_follows_html_pm() {
        for (input, want) in [
            ("White", "#ffffff"),
            ("  navy ", "#000080"),
            ("#FFF", "#ffffff"),
            ("#abcd", "#aabbcc"),
            ("#1234567", "#123456"),
            ("#12", "#112200"),
            ("#", "#"),
            ("ffffff", "invalid"),
            ("whyte", "invalid"),
            ("", "invalid"),
            ("rgb(255, 0, 16)", "#ff0010"),
            ("rgb(100%, 50%, 0%)", "#ff7f00"),
            ("rgb(300,0,0)", "#12c000"),
            ("rgb(1 , 2, 3)", "invalid"),
            ("rgb(,)", "invalid"),
        ] {
            assert_eq!(name_to_rgb(input), want, "{input:?}");
        }
    }

    #[test]
    fn contrast_as_html_pm_measures_it() {
        assert!(low_contrast("#ffffff", "#ffffff"));
        assert!(low_contrast("invalid", "invalid"));
        assert!(low_contrast("#fefefe", "#ffffff"));
        assert!(low_contrast("#0000a0", "#000000")); // blue weighs little
        assert!(!low_contrast("#0000ff", "#000000"));
        assert!(!low_contrast("#000000", "#ffffff"));
        assert!(!low_contrast("#00ff00", "#000000"));
        assert!(!low_contrast("invalid", "#ffffff"));
    }

    #[test]
    fn css_colours() {
        let style = |css: &str| {
            let mut s = Style {
                tag: "span",
                size: 3,
                fg: "#000000".to_owned(),
                bg: "#ffffff".to_owned(),
            };
            apply_css(&mut s, "#ffffff", css);
            (s.fg, s.bg)
        };
        assert_eq!(style("color: white"), ("#ffffff".into(), "#ffffff".into()));
        assert_eq!(
            style("COLOR:Red !important; background-color: #000"),
            ("#ff0000".into(), "#000000".into())
        );
        assert_eq!(
            style("color: rgba(10, 20, 300, 0.5)"),
            ("#0a14ff".into(), "#ffffff".into())
        );
        assert_eq!(
            style("color: inherit"),
            ("#000000".into(), "#ffffff".into())
        );
        assert_eq!(
            style("background-color: black; color: transparent"),
            ("#000000".into(), "#000000".into())
        );
        assert_eq!(
            style("background: url('a b.png') no-repeat, #123 url(x)"),
            ("#000000".into(), "#112233".into())
        );
        // `background:` is case-sensitive in HTML.pm
        assert_eq!(
            style("Background: black"),
            ("#000000".into(), "#ffffff".into())
        );
        assert_eq!(style("color: ;"), ("invalid".into(), "#ffffff".into()));
        assert_eq!(
            style("color: bl\nack"),
            ("#000000".into(), "#ffffff".into())
        );
    }

    #[test]
    fn the_stack_gives_the_style_of_each_text() {
        let run = |html: &[(&str, bool, &str)], text: &str| {
            let mut t = TextStyle::default();
            for (name, closing, attrs) in html {
                t.tag(name, *closing, attrs);
            }
            t.text(text);
            (t.low_contrast, t.invalid_color)
        };
        assert_eq!(
            run(&[("font", false, " color=white")], "hidden"),
            (true, false)
        );
        assert_eq!(
            run(&[("font", false, " color=white")], " &nbsp; \n"),
            (false, false)
        );
        assert_eq!(
            run(
                &[("font", false, " color=white"), ("font", true, "")],
                "seen"
            ),
            (false, false)
        );
        // bgcolor is not read: white text on a black table is white on white
        assert_eq!(
            run(
                &[
                    ("table", false, " bgcolor=black"),
                    ("font", false, " color=#fff")
                ],
                "x"
            ),
            (true, false)
        );
        assert_eq!(
            run(
                &[
                    ("td", false, " style=\"background-color:#000\""),
                    ("font", false, " color=#fff")
                ],
                "x"
            ),
            (false, false)
        );
        assert_eq!(
            run(&[("font", false, " color=blurple")], "x"),
            (false, true)
        );
        assert_eq!(
            run(&[("body", false, " text=\"#fffffe\"")], "x"),
            (true, false)
        );
        // an unknown tag carries no style
        assert_eq!(
            run(&[("blink", false, " color=white")], "x"),
            (false, false)
        );
    }
}
