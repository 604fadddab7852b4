//! The terminal application's screen: a VT screen (alacritty_terminal's
//! `Term`, its parser the `vte` crate) fed the bytes a pty gives, drawn
//! into a `wl_shm` buffer with a monospaced font, and the bytes it wants
//! written back to the pty (answers to queries such as the cursor
//! position). Keys become bytes in [`keys`]. A selection made with the
//! pointer is drawn highlighted and read back as text ([`Screen::selection_text`]);
//! pasted text becomes the bytes a shell expects ([`Screen::paste_bytes`]).

pub mod keys;

use std::{cell::RefCell, rc::Rc};

use alacritty_terminal::{
    event::{Event, EventListener},
    grid::{Dimensions, Scroll},
    index::{Column, Line, Point, Side},
    selection::{Selection, SelectionType},
    term::{cell::Flags, color::Colors, Config, Term, TermMode},
    vte::ansi::{Color, CursorShape, NamedColor, Processor, Rgb as VtRgb},
};

use crate::draw::{Canvas, CellFont, Rgb};

/// The blank margin around the grid, in pixels.
pub const PADDING: i32 = 4;
/// The lines kept above the screen (scrolled back with the wheel).
pub const SCROLLBACK: usize = 1000;
/// The default background and foreground.
pub const BACKGROUND: Rgb = 0x101418;
pub const FOREGROUND: Rgb = 0xd8dee4;
/// The background of selected cells.
pub const SELECTION: Rgb = 0x33557a;

/// The 16 standard colours (Tango's, as many terminals use): black, red,
/// green, yellow, blue, magenta, cyan, white, then their bright forms.
pub const PALETTE: [Rgb; 16] = [
    0x000000, 0xcc0000, 0x4e9a06, 0xc4a000, 0x3465a4, 0x75507b, 0x06989a, 0xd3d7cf, 0x555753, 0xef2929, 0x8ae234, 0xfce94f, 0x729fcf, 0xad7fa8, 0x34e2e2,
    0xeeeeec,
];

/// A grid size in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub columns: usize,
    pub lines: usize,
}

impl Dimensions for Size {
    fn total_lines(&self) -> usize {
        self.lines
    }
    fn screen_lines(&self) -> usize {
        self.lines
    }
    fn columns(&self) -> usize {
        self.columns
    }
}

/// What the screen wants done outside it, gathered while bytes are parsed.
#[derive(Clone, Default)]
struct Outbox(Rc<RefCell<Outgoing>>);

#[derive(Default)]
struct Outgoing {
    /// Bytes for the pty (answers to the program's queries).
    reply: Vec<u8>,
    /// A new window title.
    title: Option<String>,
}

/// The most reply bytes held for the pty: a program that floods the
/// terminal with queries it never reads the answers to cannot grow it.
pub const MAX_REPLY: usize = 64 * 1024;

impl EventListener for Outbox {
    fn send_event(&self, event: Event) {
        let mut out = self.0.borrow_mut();
        match event {
            Event::PtyWrite(s) if out.reply.len() + s.len() <= MAX_REPLY => out.reply.extend_from_slice(s.as_bytes()),
            Event::Title(t) => out.title = Some(t.chars().take(256).collect()),
            Event::ResetTitle => out.title = Some(String::new()),
            _ => {}
        }
    }
}

/// A terminal screen: the grid, its scrollback and the parser's state.
pub struct Screen {
    term: Term<Outbox>,
    parser: Processor,
    outbox: Outbox,
    size: Size,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen").field("size", &self.size).finish()
    }
}

/// The grid that fits `width` x `height` pixels with cells of `cell`
/// pixels (at least 2 columns and 1 line).
pub fn grid_size(width: u32, height: u32, cell: (i32, i32)) -> Size {
    let fit = |px: u32, cell: i32| ((px as i64 - 2 * PADDING as i64) / i64::from(cell.max(1))).max(1) as usize;
    Size { columns: fit(width, cell.0).max(2), lines: fit(height, cell.1) }
}

impl Screen {
    /// A blank screen of `size`.
    pub fn new(size: Size) -> Screen {
        let outbox = Outbox::default();
        let config = Config { scrolling_history: SCROLLBACK, ..Config::default() };
        Screen { term: Term::new(config, &size, outbox.clone()), parser: Processor::new(), outbox, size }
    }

    /// The grid's size.
    pub fn size(&self) -> Size {
        self.size
    }

    /// Resizes the grid (text reflows as a terminal's does).
    pub fn resize(&mut self, size: Size) {
        if size != self.size {
            self.size = size;
            self.term.resize(size);
        }
    }

    /// Parses `bytes` from the pty.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.advance(&mut self.term, bytes);
    }

    /// Takes the bytes to write to the pty (answers to queries).
    pub fn take_reply(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbox.0.borrow_mut().reply)
    }

    /// Takes a title the program set, if it set one since the last call.
    pub fn take_title(&mut self) -> Option<String> {
        self.outbox.0.borrow_mut().title.take()
    }

    /// Whether the cursor keys send application sequences (`ESC O A`).
    pub fn app_cursor(&self) -> bool {
        self.term.mode().contains(TermMode::APP_CURSOR)
    }

    /// Scrolls the view by `lines` (positive: back into history).
    pub fn scroll(&mut self, lines: i32) {
        self.term.scroll_display(Scroll::Delta(lines));
    }

    /// Shows the bottom of the grid again (typing does).
    pub fn scroll_to_bottom(&mut self) {
        self.term.scroll_display(Scroll::Bottom);
    }

    /// The grid point under cell (`column`, `line`) of the view (line 0
    /// at its top, whatever is scrolled back), clamped to the grid.
    fn point(&self, column: usize, line: usize) -> Point {
        let offset = self.term.grid().display_offset() as i32;
        let line = line.min(self.size.lines.saturating_sub(1)) as i32 - offset;
        Point::new(Line(line), Column(column.min(self.size.columns.saturating_sub(1))))
    }

    /// Starts a selection at cell (`column`, `line`) of the view, on the
    /// cell's left or right half (`right`), dropping any other.
    pub fn select_start(&mut self, column: usize, line: usize, right: bool) {
        let side = if right { Side::Right } else { Side::Left };
        self.term.selection = Some(Selection::new(SelectionType::Simple, self.point(column, line), side));
    }

    /// Extends the selection to cell (`column`, `line`) of the view.
    pub fn select_to(&mut self, column: usize, line: usize, right: bool) {
        let point = self.point(column, line);
        if let Some(s) = &mut self.term.selection {
            s.update(point, if right { Side::Right } else { Side::Left });
        }
    }

    /// Drops the selection.
    pub fn clear_selection(&mut self) {
        self.term.selection = None;
    }

    /// The selected text (lines joined with `\n`, trailing blanks
    /// removed), or `None` when nothing is selected.
    pub fn selection_text(&self) -> Option<String> {
        self.term.selection_to_string().filter(|s| !s.is_empty())
    }

    /// The bytes pasting `text` writes to the pty: line ends as the Enter
    /// key sends them (`\r`), and between `ESC [200~` and `ESC [201~`
    /// when the program asked for bracketed paste (then with any ESC taken
    /// out, so the text cannot end the bracket early).
    pub fn paste_bytes(&self, text: &str) -> Vec<u8> {
        let text = text.replace("\r\n", "\r").replace('\n', "\r");
        if self.term.mode().contains(TermMode::BRACKETED_PASTE) {
            let mut out = b"\x1b[200~".to_vec();
            out.extend(text.bytes().filter(|&b| b != 0x1b));
            out.extend_from_slice(b"\x1b[201~");
            out
        } else {
            text.into_bytes()
        }
    }

    /// The visible text, one `String` per line, trailing blanks removed
    /// (for tests and for the log).
    pub fn text(&self) -> Vec<String> {
        let content = self.term.renderable_content();
        let mut lines = vec![String::new(); self.size.lines];
        for cell in content.display_iter {
            let line = cell.point.line.0 + content.display_offset as i32;
            if let Some(l) = usize::try_from(line).ok().and_then(|l| lines.get_mut(l)) {
                if !cell.flags.contains(Flags::WIDE_CHAR_SPACER) {
                    l.push(cell.c);
                }
            }
        }
        lines.into_iter().map(|l| l.trim_end().to_owned()).collect()
    }

    /// Draws the screen over the whole canvas: the background, every
    /// cell's background and character, and the cursor.
    pub fn draw(&self, canvas: &mut Canvas<'_>, font: &mut CellFont) {
        let (cw, ch) = font.cell();
        canvas.fill(0, 0, canvas.width(), canvas.height(), BACKGROUND);
        let content = self.term.renderable_content();
        let colors = content.colors;
        let offset = content.display_offset as i32;
        let cursor = (content.cursor.shape != CursorShape::Hidden).then_some(content.cursor.point);
        let selection = content.selection;
        for cell in content.display_iter {
            if cell.flags.contains(Flags::WIDE_CHAR_SPACER) {
                continue;
            }
            let line = cell.point.line.0 + offset;
            let (x, y) = (PADDING + cell.point.column.0 as i32 * cw, PADDING + line * ch);
            let mut fg = rgb(cell.fg, colors, cell.flags.contains(Flags::BOLD));
            let mut bg = rgb(cell.bg, colors, false);
            if cell.flags.contains(Flags::INVERSE) {
                std::mem::swap(&mut fg, &mut bg);
            }
            if selection.is_some_and(|r| r.contains(cell.point)) {
                bg = SELECTION;
            }
            if cursor == Some(cell.point) {
                std::mem::swap(&mut fg, &mut bg);
                if bg == BACKGROUND {
                    bg = FOREGROUND;
                }
            }
            let w = if cell.flags.contains(Flags::WIDE_CHAR) { 2 * cw } else { cw };
            if bg != BACKGROUND {
                canvas.fill(x, y, w, ch, bg);
            }
            if cell.flags.contains(Flags::HIDDEN) {
                continue;
            }
            if cell.c != ' ' && cell.c != '\t' {
                font.draw(canvas, x, y, cell.c, fg);
            }
            if cell.flags.intersects(Flags::ALL_UNDERLINES) {
                canvas.fill(x, y + ch - 2, w, 1, fg);
            }
        }
    }
}

/// The colour a cell's `color` is drawn in; `bold` brightens the eight
/// standard colours, as terminals do.
fn rgb(color: Color, colors: &Colors, bold: bool) -> Rgb {
    let pack = |c: VtRgb| (u32::from(c.r) << 16) | (u32::from(c.g) << 8) | u32::from(c.b);
    match color {
        Color::Spec(c) => pack(c),
        Color::Indexed(i) => {
            let i = if bold && i < 8 { i + 8 } else { i };
            colors[i as usize].map(pack).unwrap_or_else(|| indexed(i))
        }
        Color::Named(n) => {
            let n = if bold { brighten(n) } else { n };
            colors[n].map(pack).unwrap_or_else(|| named(n))
        }
    }
}

fn brighten(n: NamedColor) -> NamedColor {
    use NamedColor::*;
    match n {
        Black => BrightBlack,
        Red => BrightRed,
        Green => BrightGreen,
        Yellow => BrightYellow,
        Blue => BrightBlue,
        Magenta => BrightMagenta,
        Cyan => BrightCyan,
        White => BrightWhite,
        n => n,
    }
}

/// xterm's 256 colours: the 16 standard ones, a 6x6x6 cube, 24 greys.
pub fn indexed(i: u8) -> Rgb {
    match i {
        0..=15 => PALETTE[i as usize],
        16..=231 => {
            let i = u32::from(i - 16);
            let level = |v: u32| if v == 0 { 0 } else { 55 + 40 * v };
            (level(i / 36) << 16) | (level(i / 6 % 6) << 8) | level(i % 6)
        }
        232..=255 => {
            let v = 8 + 10 * u32::from(i - 232);
            (v << 16) | (v << 8) | v
        }
    }
}

fn named(n: NamedColor) -> Rgb {
    match n {
        NamedColor::Foreground | NamedColor::Cursor => FOREGROUND,
        NamedColor::BrightForeground => 0xffffff,
        NamedColor::Background => BACKGROUND,
        NamedColor::DimForeground => dim(FOREGROUND),
        n => match n as usize {
            i @ 0..=15 => PALETTE[i],
            // The dim forms of the eight standard colours.
            i => dim(PALETTE[(i.saturating_sub(NamedColor::DimBlack as usize)) & 7]),
        },
    }
}

fn dim(c: Rgb) -> Rgb {
    let f = |s: u32| ((c >> s) & 0xff) * 2 / 3;
    (f(16) << 16) | (f(8) << 8) | f(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_colour_and_replies() {
        let mut s = Screen::new(Size { columns: 20, lines: 4 });
        s.feed(b"hello\r\n\x1b[42mgreen\x1b[m world");
        assert_eq!(s.text(), ["hello", "green world", "", ""]);
        // A cursor position query is answered (row 2, column 12).
        s.feed(b"\x1b[6n");
        assert_eq!(s.take_reply(), b"\x1b[2;12R");
        assert!(s.take_reply().is_empty());
        s.feed(b"\x1b]0;my title\x07");
        assert_eq!(s.take_title().as_deref(), Some("my title"));
        // Drawn: "green" has the green background, the rest not.
        let mut font = CellFont::new(crate::font::load_mono().expect("no monospaced font: install fonts-dejavu-core").1, 16.0).unwrap();
        let (cw, ch) = font.cell();
        let (w, h) = (2 * PADDING + 20 * cw, 2 * PADDING + 4 * ch);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        let mut c = Canvas::new(&mut buf, w, h).unwrap();
        s.draw(&mut c, &mut font);
        let green = (0..w).filter(|&x| c.get(x, PADDING + ch + 1) == Some(PALETTE[2])).count() as i32;
        assert!(green > 3 * cw && green <= 5 * cw, "{green} green pixels in line 2");
        assert!((0..w).all(|x| c.get(x, PADDING + 1) != Some(PALETTE[2])));
        // Text is lit in line 1.
        assert!((0..5 * cw).any(|x| (0..ch).any(|y| c.get(PADDING + x, PADDING + y).is_some_and(|p| p & 0xff > 0x80))));
    }

    #[test]
    fn a_flood_of_queries_is_bounded() {
        let mut s = Screen::new(Size { columns: 10, lines: 2 });
        for _ in 0..100_000 {
            s.feed(b"\x1b[6n");
        }
        assert!(s.take_reply().len() <= MAX_REPLY);
    }

    #[test]
    fn a_selection_reads_back_and_is_drawn() {
        let mut s = Screen::new(Size { columns: 20, lines: 3 });
        s.feed(b"first line\r\nsecond one");
        assert_eq!(s.selection_text(), None);
        // From "line" (column 6 of line 0) to "second" (column 5 of line 1).
        s.select_start(6, 0, false);
        s.select_to(5, 1, true);
        assert_eq!(s.selection_text().as_deref(), Some("line\nsecond"));
        // Past the grid is clamped to it: the last (empty) line's end.
        s.select_to(500, 500, true);
        assert_eq!(s.selection_text().as_deref(), Some("line\nsecond one\n"));
        let mut font = CellFont::new(crate::font::load_mono().expect("no monospaced font: install fonts-dejavu-core").1, 16.0).unwrap();
        let (cw, ch) = font.cell();
        let (w, h) = (2 * PADDING + 20 * cw, 2 * PADDING + 3 * ch);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        let mut c = Canvas::new(&mut buf, w, h).unwrap();
        s.draw(&mut c, &mut font);
        // "first " is not selected, "line" is.
        assert_ne!(c.get(PADDING + cw / 2, PADDING + 1), Some(SELECTION));
        assert_eq!(c.get(PADDING + 6 * cw + 1, PADDING + 1), Some(SELECTION));
        s.clear_selection();
        assert_eq!(s.selection_text(), None);
    }

    #[test]
    fn pasted_text_is_typed_or_bracketed() {
        let mut s = Screen::new(Size { columns: 20, lines: 3 });
        assert_eq!(s.paste_bytes("ls\necho a\r\n"), b"ls\recho a\r");
        s.feed(b"\x1b[?2004h");
        assert_eq!(s.paste_bytes("x\x1b[201~rm\n"), b"\x1b[200~x[201~rm\r\x1b[201~");
    }

    #[test]
    fn grid_fits_the_window() {
        assert_eq!(grid_size(808, 608, (10, 20)), Size { columns: 80, lines: 30 });
        assert_eq!(grid_size(0, 0, (10, 20)), Size { columns: 2, lines: 1 });
        assert_eq!(indexed(196), 0xff0000);
        assert_eq!(indexed(232), 0x080808);
    }
}
