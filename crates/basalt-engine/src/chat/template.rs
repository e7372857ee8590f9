//! The model's own chat template (the Jinja text stored in its GGUF), rendered with
//! minijinja as Hugging Face `transformers` renders it.

use minijinja::{context, Environment, Error, ErrorKind};

use crate::EngineError;

/// One turn of a conversation, already flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles a template; `bos_token` and `eos_token` are the strings the template may use.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| EngineError::Template(e.to_string()))
    }
}

/// A piece of a rendered conversation: the template's own text (whose control
/// markers are real), or the content of one message (untrusted text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedPiece<'a> {
    Template(String),
    Content(&'a str),
}

/// Stands around a message's index in place of its content while rendering; a
/// private-use character no chat template writes itself.
const CONTENT_MARK: char = '\u{F8FF}';

impl ChatTemplate {
    /// Renders the conversation with every message's content kept apart from the
    /// template's text, so the caller can tokenize content without parsing control
    /// tokens in it (a user who writes `<|im_end|>` must not close a turn).
    ///
    /// Each content is rendered as a marker and found again in the output; a template
    /// that alters content (anything but passing it through, or trimming it) is
    /// refused rather than guessed at.
    pub fn render_pieces<'a>(
        &self,
        messages: &'a [ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<RenderedPiece<'a>>, EngineError> {
        // The marker has a space on each side: a template that trims content drops
        // both, one that passes it through keeps both.
        let marked: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                role: m.role.clone(),
                content: format!(" {CONTENT_MARK}{i}{CONTENT_MARK} "),
            })
            .collect();
        let rendered = self.render(&marked, add_generation_prompt)?;
        let altered = || {
            EngineError::Template(
                "the model's chat template alters message text, so control tokens in it cannot be kept apart from the template's own".into(),
            )
        };
        let mut templates = Vec::with_capacity(messages.len() + 1);
        let mut indexes = Vec::with_capacity(messages.len());
        let mut parts = rendered.split(CONTENT_MARK);
        templates.push(parts.next().unwrap_or_default().to_string());
        while let Some(index) = parts.next() {
            let after = parts.next().ok_or_else(altered)?;
            let index: usize = index.parse().map_err(|_| altered())?;
            if indexes.last().is_some_and(|&last| index <= last) || index >= messages.len() {
                return Err(altered());
            }
            indexes.push(index);
            templates.push(after.to_string());
        }
        let mut pieces = Vec::with_capacity(2 * indexes.len() + 1);
        for (n, &index) in indexes.iter().enumerate() {
            let (before, after) = templates.split_at_mut(n + 1);
            let (before, after) = (&mut before[n], &mut after[0]);
            let content = messages[index].content.as_str();
            let content = match (before.ends_with(' '), after.starts_with(' ')) {
                (true, true) => {
                    before.pop();
                    after.remove(0);
                    content
                }
                (false, false) => content.trim(),
                _ => return Err(altered()),
            };
            pieces.push(RenderedPiece::Template(std::mem::take(before)));
            pieces.push(RenderedPiece::Content(content));
        }
        if let Some(last) = templates.pop() {
            pieces.push(RenderedPiece::Template(last));
        }
        pieces.retain(|p| match p {
            RenderedPiece::Template(t) => !t.is_empty(),
            RenderedPiece::Content(c) => !c.is_empty(),
        });
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_smollm2_template_with_default_system_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").expect("compiles");
        let out = t.render(&[msg("user", "Hi")], true).expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn renders_given_system_prompt_and_turns() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").expect("compiles");
        let out = t
            .render(
                &[
                    msg("system", "Be brief."),
                    msg("user", "Hi"),
                    msg("assistant", "Hello"),
                ],
                false,
            )
            .expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        );
    }

    #[test]
    fn pieces_keep_content_apart_from_the_template() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").expect("compiles");
        let messages = [msg("user", " Hi <|im_end|> "), msg("assistant", "Yo")];
        let pieces = t.render_pieces(&messages, true).expect("renders");
        assert_eq!(
            pieces,
            vec![
                RenderedPiece::Template("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n".into()),
                RenderedPiece::Content(" Hi <|im_end|> "),
                RenderedPiece::Template("<|im_end|>\n<|im_start|>assistant\n".into()),
                RenderedPiece::Content("Yo"),
                RenderedPiece::Template("<|im_end|>\n<|im_start|>assistant\n".into()),
            ]
        );
        // Joined, the pieces are exactly what the template renders.
        let joined: String = pieces
            .iter()
            .map(|p| match p {
                RenderedPiece::Template(t) => t.as_str(),
                RenderedPiece::Content(c) => c,
            })
            .collect();
        assert_eq!(joined, t.render(&messages, true).expect("renders"));
    }

    #[test]
    fn a_trimming_template_gets_trimmed_content_and_an_altering_one_is_refused() {
        let trims = ChatTemplate::new(
            "{% for m in messages %}[{{ m['content'] | trim }}]{% endfor %}",
            "",
            "",
        )
        .expect("compiles");
        let messages = [msg("user", "  a b  ")];
        assert_eq!(
            trims.render_pieces(&messages, false).expect("renders"),
            vec![
                RenderedPiece::Template("[".into()),
                RenderedPiece::Content("a b"),
                RenderedPiece::Template("]".into()),
            ]
        );
        let alters = ChatTemplate::new(
            "{% for m in messages %}{{ m['content'] | upper }}{{ m['content'] }}{% endfor %}",
            "",
            "",
        )
        .expect("compiles");
        assert!(alters.render_pieces(&messages, false).is_err());
    }

    #[test]
    fn raise_exception_becomes_a_template_error() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "")
            .expect("compiles");
        let err = t.render(&[], true).expect_err("must fail");
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }
}
