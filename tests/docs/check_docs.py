#!/usr/bin/env python3
"""The documentation's test: its C++ code and the error messages it quotes must match the code.

  check_docs.py snippets OUTPUT.cpp MARKDOWN...   one translation unit from every ```cpp block
  check_docs.py synopses ROOT MARKDOWN...          every ```cpp synopsis block names real functions
  check_docs.py messages ROOT MARKDOWN...          every quoted error message is in the code

snippets: every C++ code block of the Markdown files becomes part of one translation unit, which
ctest compiles (docs.snippets), so a snippet that stops compiling fails the test suite.

Each block gets a namespace of its own. Its definitions (types, templates, concepts, functions,
using-declarations, static_asserts) stay at namespace scope; its statements go, in order, into one
function of that namespace. The prelude below declares the names the snippets take as given (a
model, a batch, a teacher and a student, ...), so a snippet reads as it would in a user's trainer.
#line directives make every compiler error point at the Markdown file and line. A block indented
under a list item loses its fence's indentation first.

synopses: a block opened with ```cpp synopsis lists declarations of the library's own API (a class's
members, a concept's shape) that cannot compile on their own; each function name it declares must
occur in include/ardent, so a renamed or removed function cannot stay in the docs.

messages: a quoted message is a `backticked` cell of a Markdown table column whose heading says
"message". The message is cut at its placeholders (<...>, ..., numbers, quoted argument names and
values); each remaining piece of at least 12 characters must occur in a string literal of
include/ardent, examples/ or tools/. The check catches reworded and removed messages; it cannot check how
the pieces are put together, which the unit tests of each error do.
"""
import pathlib
import re
import sys

PRELUDE = r'''
#include <ardent/ardent.hpp>

#include <utility>
#include <vector>

// The names the documentation's snippets take as given.
namespace doc_prelude {
using Teacher = ardent::models::SmallCNN;
using Student = ardent::models::SmallCNN;
inline Teacher teacher{ardent::models::SmallCNNOptions(10).width(8)};
inline Student student{ardent::models::SmallCNNOptions(10).width(4)};
inline ardent::models::SmallCNN model{ardent::models::SmallCNNOptions(10)};
inline torch::Tensor x, y, labels, targets, teacher_logits, student_logits, x_test, y_test;
inline std::vector<std::pair<torch::Tensor, torch::Tensor>> batches;
inline torch::optim::SGD optimizer{student->parameters(), torch::optim::SGDOptions(0.1)};
inline ardent::losses::KL kl;
inline ardent::targets::Logits logits;
inline ardent::DistillerOptions opts;
inline ardent::attacks::PGD pgd{ardent::paper_pgd()};
inline ardent::ARD<Teacher, Student> ard = ardent::make_ard(teacher, student);
inline const ardent::data::MNIST train_set;
inline ardent::data::ShuffledBatches loader{train_set.images(), train_set.labels(), 128, 0};
}  // namespace doc_prelude
'''

DEFINITION = re.compile(
    r'^(struct|class|template|concept|namespace|using|static_assert|enum|union|typedef|int main|///|#)\b|'
    r'^(inline |static |constexpr )*[A-Za-z_][\w:<>,\s\*&]*\s[\w:~]+\([^=]*\)\s*(const\s*)?(noexcept\s*)?\{?$')


def blocks(path, info='cpp'):
    """Yields (first line number, lines) of each block opened with ```<info>."""
    lines = open(path, encoding='utf-8').read().split('\n')
    start, body, indent = None, [], 0
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == '```' + info:
            start, body, indent = number + 1, [], len(line) - len(line.lstrip())
        elif start is not None and line.strip().startswith('```'):
            yield start, [l[indent:] if l[:indent].isspace() else l for l in body]  # a block in a list item
            start = None
        elif start is not None:
            body.append(line)


def split(first, lines):
    """Splits a block into its definitions and its statements, each a list of (line number, text)."""
    definitions, statements = [], []
    depth, in_definition = 0, False
    for offset, line in enumerate(lines):
        number = first + offset
        if depth == 0 and not in_definition:
            in_definition = bool(DEFINITION.match(line)) and not line.startswith('#include')
            if line.startswith('#include'):
                continue  # the prelude includes the umbrella header; the block's includes go first
        (definitions if in_definition else statements).append((number, line))
        depth += line.count('{') - line.count('}')
        stripped = line.split('//')[0].rstrip()
        if depth == 0 and in_definition and (stripped.endswith(';') or stripped.endswith('}')):
            in_definition = False
    return definitions, statements


def emit(out, path, numbered):
    last = None
    for number, text in numbered:
        if last is None or number != last + 1:
            out.append(f'#line {number} "{path}"')
        out.append(text)
        last = number


def snippets(output, markdown):
    includes, body, count = set(), [], 0
    for path in markdown:
        for first, lines in blocks(path):
            count += 1
            includes.update(l.strip() for l in lines if l.startswith('#include'))
            definitions, statements = split(first, lines)
            body.append(f'namespace doc_block_{count} {{  // {path}:{first}')
            body.append('using namespace doc_prelude;')
            emit(body, path, definitions)
            if any(text.strip() for _, text in statements):
                body.append('[[maybe_unused]] inline void statements() {')
                emit(body, path, statements)
                body.append('}')
            body.append(f'}}  // namespace doc_block_{count}')
    with open(output, 'w', encoding='utf-8') as out:
        out.write('// Generated by tests/docs/snippets.py from the documentation; do not edit.\n')
        out.write('\n'.join(sorted(includes)) + '\n' + PRELUDE + '\n'.join(body) + '\n')
    print(f'check_docs.py: {count} C++ blocks from {len(markdown)} files')
    return 0


def code_text(root):
    """The text of every header, example and tool: what the docs are checked against."""
    files = list(pathlib.Path(root, 'include', 'ardent').rglob('*.hpp'))
    for folder in ('examples', 'tools'):
        files += list(pathlib.Path(root, folder).glob('*.[ch]pp'))
    return '\n'.join(f.read_text(encoding='utf-8') for f in files)


def synopses(root, markdown):
    code, failures, count = code_text(root), [], 0
    for path in markdown:
        for first, lines in blocks(path, 'cpp synopsis'):
            count += 1
            for offset, line in enumerate(lines):
                for name in re.findall(r'\b([a-z_][a-z0-9_]*)\(', line.split('//')[0]):
                    if name not in ('requires', 'decltype', 'sizeof', 'noexcept', 'static_assert', 'operator') \
                            and not re.search(r'\b' + name + r'\(', code):
                        failures.append(f'{path}:{first + offset}: {name}() is not in include/ardent, examples/ or tools/')
    print('\n'.join(failures) or f'check_docs.py: {count} synopsis blocks name only existing functions')
    return 1 if failures else 0


# Placeholders, values and the places where the code joins a message from parts: <...>, ..., quoted
# names, shapes, any word with a digit, and the "ardent::function: " prefix the checks put in front.
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…|'[^']*'|\[[^\]]*\]|\S*\d\S*|^ardent::[\w:]+: |: ")


def quoted_messages(path):
    """Yields (line number, message) for each `backticked` cell of a table column headed 'message'."""
    column = None
    for number, line in enumerate(open(path, encoding='utf-8').read().split('\n'), 1):
        if not line.startswith('|'):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if column is None:
            headings = [i for i, c in enumerate(cells) if 'message' in c.lower()]
            column = headings[0] if headings else -1
            continue
        if column < 0 or column >= len(cells) or set(cells[0]) <= set('-: '):
            continue
        for message in re.findall(r'`([^`]+)`', cells[column]):
            yield number, message


def messages(root, markdown):
    joined = re.sub(r'"\s*\n\s*"', '', code_text(root))  # adjacent literals are one string
    literals = ' '.join(re.findall(r'"((?:[^"\\]|\\.)*)"', joined))
    failures, count = [], 0
    for path in markdown:
        for number, message in quoted_messages(path):
            count += 1
            for piece in PLACEHOLDER.split(message):
                piece = piece.strip(' :,.()')
                if len(piece) >= 12 and piece not in literals:
                    failures.append(f'{path}:{number}: "{piece}" (from `{message}`) is in no message of the code')
    print('\n'.join(failures) or f'check_docs.py: {count} quoted messages found in the code')
    return 1 if failures else 0


if __name__ == '__main__':
    command, arguments = sys.argv[1], sys.argv[2:]
    sys.exit({'snippets': snippets, 'synopses': synopses, 'messages': messages}[command](arguments[0], arguments[1:]))
