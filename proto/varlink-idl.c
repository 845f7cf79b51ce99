/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Varlink IDL parser and JSON parameter validator; the rules are documented in varlink-idl.h.
 * Runs in: worker and clients. The text is built in, but the parser is fuzzed
 * as if it were hostile: recursion is bounded by VARLINK_IDL_NESTING_MAX at parse time and by
 * VARLINK_IDL_VALIDATE_DEPTH_MAX during validation, and every error path frees what it built.
 */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "escape.h"
#include "json-raw.h"
#include "json-util.h"
#include "log.h"
#include "varlink-idl.h"
#include "varlink-message.h"

#define REQUIRES_MORE_MARKER "[Requires 'more' flag]"

/* Client-controlled path components (unknown keys, map keys) are cut after this many bytes, so an
 * error reply cannot be made to echo megabytes back. */
#define PATH_COMPONENT_MAX 64U

typedef enum VarlinkTypeKind {
        VARLINK_TYPE_BOOL,
        VARLINK_TYPE_INT,
        VARLINK_TYPE_FLOAT,
        VARLINK_TYPE_STRING,
        VARLINK_TYPE_OBJECT,
        VARLINK_TYPE_STRUCT,
        VARLINK_TYPE_ENUM,
        VARLINK_TYPE_NAMED,
        VARLINK_TYPE_ARRAY,
        VARLINK_TYPE_MAP,
} VarlinkTypeKind;

typedef struct VarlinkType VarlinkType;

/* A struct field (type != NULL) or an enum value (type == NULL). */
typedef struct VarlinkField {
        char *name;
        VarlinkType *type;
        unsigned line, column; /* of the name, for duplicate errors */
} VarlinkField;

struct VarlinkType {
        VarlinkTypeKind kind;
        bool nullable;
        VarlinkType *element;        /* ARRAY, MAP */
        VarlinkField *fields;        /* STRUCT, ENUM: in declaration order */
        size_t n_fields;
        char *name;                  /* NAMED: the referenced type name */
        const VarlinkSymbol *symbol; /* NAMED: the "type" symbol it resolved to */
        unsigned line, column;       /* NAMED: where the reference is, for errors */
};

typedef enum VarlinkSymbolKind {
        VARLINK_SYMBOL_TYPE,
        VARLINK_SYMBOL_METHOD,
        VARLINK_SYMBOL_ERROR,
} VarlinkSymbolKind;

struct VarlinkSymbol {
        VarlinkSymbolKind kind;
        char *name;
        unsigned line, column; /* of the name, for duplicate errors */
        VarlinkType *type;     /* TYPE: STRUCT or ENUM; METHOD: input STRUCT; ERROR: STRUCT */
        VarlinkType *output;   /* METHOD: output STRUCT */
        bool requires_more;    /* METHOD */
};

struct VarlinkInterface {
        char *name;
        char *text;
        VarlinkSymbol **symbols; /* owned, in declaration order */
        size_t n_symbols;
        VarlinkSymbol **by_name; /* borrowed, sorted by name, for O(log n) lookups */
        VarlinkSymbol **methods; /* borrowed, in declaration order */
        size_t n_methods;
};

/* ---- Data structure lifecycle ---- */

/* Recursion is bounded: the parser refuses to build trees deeper than VARLINK_IDL_NESTING_MAX. */
static VarlinkType *varlink_type_free(VarlinkType *t) {
        if (!t)
                return NULL;

        for (size_t k = 0; k < t->n_fields; k++) {
                free(t->fields[k].name);
                varlink_type_free(t->fields[k].type);
        }
        free(t->fields);
        varlink_type_free(t->element);
        free(t->name);
        return mfree(t);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkType *, varlink_type_free);

static VarlinkSymbol *varlink_symbol_free(VarlinkSymbol *s) {
        if (!s)
                return NULL;

        free(s->name);
        varlink_type_free(s->type);
        varlink_type_free(s->output);
        return mfree(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkSymbol *, varlink_symbol_free);

static void symbols_free(VarlinkSymbol **symbols, size_t n) {
        for (size_t k = 0; k < n; k++)
                varlink_symbol_free(symbols[k]);
        free(symbols);
}

VarlinkInterface *varlink_interface_free(VarlinkInterface *i) {
        if (!i)
                return NULL;

        symbols_free(i->symbols, i->n_symbols);
        free(i->by_name);
        free(i->methods);
        free(i->name);
        free(i->text);
        return mfree(i);
}

/* ---- Character classes and name grammar (ASCII only, independent of the locale) ---- */

static bool char_is_lower(char c) {
        return c >= 'a' && c <= 'z';
}

static bool char_is_upper(char c) {
        return c >= 'A' && c <= 'Z';
}

static bool char_is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool char_is_alpha(char c) {
        return char_is_lower(c) || char_is_upper(c);
}

static bool char_is_alnum(char c) {
        return char_is_alpha(c) || char_is_digit(c);
}

static bool char_is_word(char c) {
        return char_is_alnum(c) || c == '_' || c == '.' || c == '-';
}

/* [A-Za-z](_?[A-Za-z0-9])* */
static bool field_name_is_valid(const char *s, size_t n) {
        if (n == 0 || !char_is_alpha(s[0]))
                return false;

        for (size_t k = 1; k < n; k++) {
                if (s[k] == '_') {
                        k++;
                        if (k >= n)
                                return false;
                }
                if (!char_is_alnum(s[k]))
                        return false;
        }

        return true;
}

/* ---- Lexer ---- */

typedef enum TokenKind {
        TOKEN_EOF,
        TOKEN_WORD, /* [A-Za-z0-9_.-]+, checked against the grammar by the parser */
        TOKEN_LPAREN,
        TOKEN_RPAREN,
        TOKEN_COMMA,
        TOKEN_COLON,
        TOKEN_QUESTION,
        TOKEN_ARRAY, /* "[]" */
        TOKEN_MAP,   /* "[string]" */
        TOKEN_ARROW, /* "->" */
} TokenKind;

typedef struct Token {
        TokenKind kind;
        const char *start; /* points into the parsed text */
        size_t length;
        unsigned line, column;
        bool newline_before; /* a line break separates it from the previous token */
        bool space_before;   /* whitespace or a comment separates it from the previous token */
        bool requires_more;  /* its doc comment contains REQUIRES_MORE_MARKER */
} Token;

typedef struct Parser {
        const char *text;
        const char *p;         /* lexer position */
        unsigned line, column; /* of p */
        bool line_has_token, line_has_comment;
        Token tok; /* the current token */

        unsigned error_line, error_column;

        VarlinkSymbol **symbols; /* owned until moved into the interface */
        size_t n_symbols, n_symbols_allocated;
        VarlinkType **refs; /* named type references, in text order; borrowed */
        size_t n_refs, n_refs_allocated;
} Parser;

static void parser_done(Parser *p) {
        symbols_free(p->symbols, p->n_symbols);
        p->symbols = NULL;
        p->n_symbols = 0;
        p->refs = mfree(p->refs);
        p->n_refs = 0;
}

static int parser_error_at(Parser *p, unsigned line, unsigned column, const char *format, ...)
        _printf_(4, 5);
static int parser_error_at(Parser *p, unsigned line, unsigned column, const char *format, ...) {
        p->error_line = line;
        p->error_column = column;

        if (log_get_max_level() >= LOG_DEBUG) {
                char buf[256];
                va_list ap;

                va_start(ap, format);
                (void) vsnprintf(buf, sizeof(buf), format, ap);
                va_end(ap);
                log_debug("Varlink IDL:%u:%u: %s", line, column, buf);
        }

        return -EBADMSG;
}

#define parser_error(p, tok, ...) parser_error_at((p), (tok)->line, (tok)->column, __VA_ARGS__)

/* Names a token in an error message; the result lives in buf. Tokens are ASCII by construction. */
static const char *token_describe(const Token *t, char buf[static 48]) {
        if (t->kind == TOKEN_EOF)
                return "end of text";

        (void) snprintf(buf, 48, "'%.*s%s'", (int) MIN(t->length, (size_t) 32), t->start,
                        t->length > 32 ? "..." : "");
        return buf;
}

/* Skips whitespace and comments, then reads the next token into p->tok. */
static int parser_advance(Parser *p) {
        bool newline = false, space = false, doc_more = false;
        Token t;

        for (;;) {
                char c = *p->p;

                if (c == ' ' || c == '\t' || c == '\r') {
                        p->p++;
                        p->column++;
                        space = true;
                } else if (c == '\n') {
                        /* A blank line ends a doc comment: only comments directly above count. */
                        if (!p->line_has_token && !p->line_has_comment)
                                doc_more = false;
                        p->line_has_token = p->line_has_comment = false;
                        p->p++;
                        p->line++;
                        p->column = 1;
                        space = newline = true;
                } else if (c == '#') {
                        const char *end = p->p + strcspn(p->p, "\n");

                        /* Comments are served verbatim in a JSON string: they must be UTF-8. */
                        for (const char *q = p->p; q < end;) {
                                size_t n = utf8_sequence_len((const unsigned char *) q);
                                if (n == 0)
                                        return parser_error_at(p, p->line, p->column + (unsigned) (q - p->p),
                                                               "Invalid UTF-8 in comment.");
                                q += n;
                        }

                        /* A comment after code on the same line documents nothing. */
                        if (!p->line_has_token &&
                            memmem(p->p, (size_t) (end - p->p), REQUIRES_MORE_MARKER,
                                   strlen(REQUIRES_MORE_MARKER)))
                                doc_more = true;

                        p->line_has_comment = true;
                        p->column += (unsigned) (end - p->p);
                        p->p = end;
                        space = true;
                } else
                        break;
        }

        t = (Token) {
                .start = p->p,
                .line = p->line,
                .column = p->column,
                .newline_before = newline,
                .space_before = space,
                .requires_more = doc_more,
                .length = 1,
        };

        switch (*p->p) {

        case '\0':
                t.kind = TOKEN_EOF;
                t.length = 0;
                break;

        case '(':
                t.kind = TOKEN_LPAREN;
                break;

        case ')':
                t.kind = TOKEN_RPAREN;
                break;

        case ',':
                t.kind = TOKEN_COMMA;
                break;

        case ':':
                t.kind = TOKEN_COLON;
                break;

        case '?':
                t.kind = TOKEN_QUESTION;
                break;

        case '[':
                /* The grammar has "[]" and "[string]" as literals, without inner whitespace. */
                if (p->p[1] == ']') {
                        t.kind = TOKEN_ARRAY;
                        t.length = 2;
                } else if (strneq(p->p + 1, "string]", 7)) {
                        t.kind = TOKEN_MAP;
                        t.length = 8;
                } else
                        return parser_error(p, &t, "Expected '[]' or '[string]'.");
                break;

        default: {
                const char *q = p->p;
                unsigned char c = (unsigned char) *q;

                if (q[0] == '-' && q[1] == '>') {
                        t.kind = TOKEN_ARROW;
                        t.length = 2;
                        break;
                }

                if (!char_is_word(*q)) {
                        if (c >= 0x20 && c < 0x7f)
                                return parser_error(p, &t, "Unexpected character '%c'.", c);
                        return parser_error(p, &t, "Unexpected byte 0x%02x.", c);
                }

                /* Stop before "->", so that "a->" is not one word. */
                while (char_is_word(*q) && !(q[0] == '-' && q[1] == '>'))
                        q++;

                t.kind = TOKEN_WORD;
                t.length = (size_t) (q - p->p);
                break;
        }
        }

        p->p += t.length;
        p->column += (unsigned) t.length;
        if (t.kind != TOKEN_EOF)
                p->line_has_token = true;

        p->tok = t;
        return 0;
}

static bool token_is(const Token *t, const char *word) {
        size_t n = strlen(word);

        return t->kind == TOKEN_WORD && t->length == n && memcmp(t->start, word, n) == 0;
}

/* ---- Parser ---- */

static int field_compare(const void *a, const void *b) {
        const VarlinkField *x = *(const VarlinkField *const *) a, *y = *(const VarlinkField *const *) b;
        int c = strcmp(x->name, y->name);

        if (c != 0)
                return c;
        /* Same name: keep declaration order, so the later one counts as the duplicate. */
        return (x > y) - (x < y);
}

/* Finds the earliest-declared field whose name was already used before it. Sorting keeps this
 * O(n log n) for hostile inputs with thousands of fields. */
static int fields_find_duplicate(const VarlinkField *fields, size_t n, const VarlinkField **ret) {
        _cleanup_free_ const VarlinkField **sorted = NULL;
        const VarlinkField *dup = NULL;

        if (n >= 2) {
                sorted = new(const VarlinkField *, n);
                if (!sorted)
                        return -ENOMEM;

                for (size_t k = 0; k < n; k++)
                        sorted[k] = fields + k;
                qsort(sorted, n, sizeof(sorted[0]), field_compare);

                for (size_t k = 1; k < n; k++)
                        if (streq(sorted[k - 1]->name, sorted[k]->name) && (!dup || sorted[k] < dup))
                                dup = sorted[k];
        }

        *ret = dup;
        return 0;
}

static int parse_type(Parser *p, unsigned depth, VarlinkType **ret);

/* Parses "( … )" at nesting level `depth`: an empty struct, a struct or (if allow_enum) an enum.
 * Leaves p->tok at the token after the ')'. */
static int parse_fields(Parser *p, unsigned depth, bool allow_enum, VarlinkType **ret) {
        _cleanup_(varlink_type_freep) VarlinkType *t = NULL;
        const VarlinkField *dup;
        size_t allocated = 0;
        char buf[48];
        int r;

        if (p->tok.kind != TOKEN_LPAREN)
                return parser_error(p, &p->tok, "Expected '(', got %s.", token_describe(&p->tok, buf));
        if (depth > VARLINK_IDL_NESTING_MAX)
                return parser_error(p, &p->tok, "Types nested more than %u levels deep.",
                                    VARLINK_IDL_NESTING_MAX);

        t = new0(VarlinkType, 1);
        if (!t)
                return -ENOMEM;
        t->kind = VARLINK_TYPE_STRUCT; /* "()" is an empty struct */

        r = parser_advance(p);
        if (r < 0)
                return r;

        /* "()" has no entries; otherwise "name[: type]" entries separated by single commas. */
        if (p->tok.kind != TOKEN_RPAREN)
                for (;;) {
                        _cleanup_(varlink_type_freep) VarlinkType *field_type = NULL;
                        _cleanup_free_ char *name = NULL;
                        Token name_tok = p->tok;

                        if (name_tok.kind != TOKEN_WORD ||
                            !field_name_is_valid(name_tok.start, name_tok.length))
                                return parser_error(p, &name_tok, "Expected a field name, got %s.",
                                                    token_describe(&name_tok, buf));

                        name = strndup(name_tok.start, name_tok.length);
                        if (!name)
                                return -ENOMEM;

                        r = parser_advance(p);
                        if (r < 0)
                                return r;

                        /* The first entry decides: "name: type" makes a struct, a bare name an enum. */
                        if (p->tok.kind == TOKEN_COLON &&
                            (t->n_fields == 0 || t->kind == VARLINK_TYPE_STRUCT)) {
                                r = parser_advance(p);
                                if (r < 0)
                                        return r;

                                r = parse_type(p, depth + 1, &field_type);
                                if (r < 0)
                                        return r;

                        } else if ((p->tok.kind == TOKEN_COMMA || p->tok.kind == TOKEN_RPAREN) && allow_enum &&
                                   (t->n_fields == 0 || t->kind == VARLINK_TYPE_ENUM))
                                t->kind = VARLINK_TYPE_ENUM;
                        else if (p->tok.kind == TOKEN_COLON)
                                return parser_error(p, &p->tok, "Expected ',' or ')' after enum value.");
                        else
                                return parser_error(p, &p->tok, "Expected ':' after field name, got %s.",
                                                    token_describe(&p->tok, buf));

                        if (!GREEDY_REALLOC(t->fields, allocated, t->n_fields + 1))
                                return -ENOMEM;
                        t->fields[t->n_fields++] = (VarlinkField) {
                                .name = TAKE_PTR(name),
                                .type = TAKE_PTR(field_type),
                                .line = name_tok.line,
                                .column = name_tok.column,
                        };

                        if (p->tok.kind == TOKEN_RPAREN)
                                break;
                        if (p->tok.kind != TOKEN_COMMA)
                                return parser_error(p, &p->tok, "Expected ',' or ')', got %s.",
                                                    token_describe(&p->tok, buf));

                        /* Trailing commas are not allowed: the next loop iteration wants a name. */
                        r = parser_advance(p);
                        if (r < 0)
                                return r;
                }

        r = fields_find_duplicate(t->fields, t->n_fields, &dup);
        if (r < 0)
                return r;
        if (dup)
                return parser_error_at(p, dup->line, dup->column, "Duplicate %s '%s'.",
                                       t->kind == VARLINK_TYPE_ENUM ? "enum value" : "field", dup->name);

        r = parser_advance(p); /* past ')' */
        if (r < 0)
                return r;

        *ret = TAKE_PTR(t);
        return 0;
}

/* Parses a field type. `depth` is the nesting level an inline struct, enum, "[]" or "[string]"
 * at this position would have. Leaves p->tok at the token after the type. */
static int parse_type(Parser *p, unsigned depth, VarlinkType **ret) {
        _cleanup_(varlink_type_freep) VarlinkType *t = NULL;
        bool nullable = false;
        char buf[48];
        int r;

        if (p->tok.kind == TOKEN_QUESTION) {
                nullable = true;

                r = parser_advance(p);
                if (r < 0)
                        return r;

                if (p->tok.kind == TOKEN_QUESTION)
                        return parser_error(p, &p->tok, "'?' may not be repeated.");
                if (p->tok.space_before)
                        return parser_error(p, &p->tok, "No whitespace allowed after '?'.");
        }

        switch (p->tok.kind) {

        case TOKEN_ARRAY:
        case TOKEN_MAP: {
                VarlinkTypeKind kind = p->tok.kind == TOKEN_ARRAY ? VARLINK_TYPE_ARRAY : VARLINK_TYPE_MAP;

                if (depth > VARLINK_IDL_NESTING_MAX)
                        return parser_error(p, &p->tok, "Types nested more than %u levels deep.",
                                            VARLINK_IDL_NESTING_MAX);

                t = new0(VarlinkType, 1);
                if (!t)
                        return -ENOMEM;
                t->kind = kind;

                r = parser_advance(p);
                if (r < 0)
                        return r;
                if (p->tok.space_before)
                        return parser_error(p, &p->tok, "No whitespace allowed after '%s'.",
                                            kind == VARLINK_TYPE_ARRAY ? "[]" : "[string]");

                /* "[]?T" is fine: the element type may be nullable on its own. */
                r = parse_type(p, depth + 1, &t->element);
                if (r < 0)
                        return r;
                break;
        }

        case TOKEN_LPAREN:
                r = parse_fields(p, depth, /* allow_enum= */ true, &t);
                if (r < 0)
                        return r;
                break;

        case TOKEN_WORD: {
                static const struct {
                        const char *name;
                        VarlinkTypeKind kind;
                } builtin[] = {
                        { "bool", VARLINK_TYPE_BOOL },     { "int", VARLINK_TYPE_INT },
                        { "float", VARLINK_TYPE_FLOAT },   { "string", VARLINK_TYPE_STRING },
                        { "object", VARLINK_TYPE_OBJECT },
                };
                bool found = false;

                t = new0(VarlinkType, 1);
                if (!t)
                        return -ENOMEM;

                for (size_t k = 0; k < ELEMENTSOF(builtin); k++)
                        if (token_is(&p->tok, builtin[k].name)) {
                                t->kind = builtin[k].kind;
                                found = true;
                                break;
                        }

                if (!found) {
                        if (!varlink_symbol_name_valid(p->tok.start, p->tok.length))
                                return parser_error(p, &p->tok, "Expected a type, got %s.",
                                                    token_describe(&p->tok, buf));

                        t->kind = VARLINK_TYPE_NAMED;
                        t->line = p->tok.line;
                        t->column = p->tok.column;
                        t->name = strndup(p->tok.start, p->tok.length);
                        if (!t->name)
                                return -ENOMEM;

                        /* Resolved once the whole text is parsed: forward references are allowed.
                         * The pointer stays valid because any later failure aborts the parse. */
                        if (!GREEDY_REALLOC(p->refs, p->n_refs_allocated, p->n_refs + 1))
                                return -ENOMEM;
                        p->refs[p->n_refs++] = t;
                }

                r = parser_advance(p);
                if (r < 0)
                        return r;
                break;
        }

        default:
                return parser_error(p, &p->tok, "Expected a type, got %s.", token_describe(&p->tok, buf));
        }

        t->nullable = nullable;
        *ret = TAKE_PTR(t);
        return 0;
}

/* Parses one "type", "method" or "error" declaration; p->tok is the keyword. */
static int parse_member(Parser *p, VarlinkSymbolKind kind) {
        _cleanup_(varlink_symbol_freep) VarlinkSymbol *s = NULL;
        bool requires_more = p->tok.requires_more;
        char buf[48];
        int r;

        r = parser_advance(p);
        if (r < 0)
                return r;

        if (p->tok.kind != TOKEN_WORD || !varlink_symbol_name_valid(p->tok.start, p->tok.length))
                return parser_error(p, &p->tok, "Expected a name starting with an uppercase letter, got %s.",
                                    token_describe(&p->tok, buf));

        s = new0(VarlinkSymbol, 1);
        if (!s)
                return -ENOMEM;

        s->kind = kind;
        s->line = p->tok.line;
        s->column = p->tok.column;
        s->requires_more = kind == VARLINK_SYMBOL_METHOD && requires_more;
        s->name = strndup(p->tok.start, p->tok.length);
        if (!s->name)
                return -ENOMEM;

        r = parser_advance(p);
        if (r < 0)
                return r;

        /* Only named types may be enums; parameter lists are always structs. */
        r = parse_fields(p, 1, /* allow_enum= */ kind == VARLINK_SYMBOL_TYPE, &s->type);
        if (r < 0)
                return r;

        if (kind == VARLINK_SYMBOL_METHOD) {
                if (p->tok.kind != TOKEN_ARROW)
                        return parser_error(p, &p->tok, "Expected '->', got %s.", token_describe(&p->tok, buf));

                r = parser_advance(p);
                if (r < 0)
                        return r;

                r = parse_fields(p, 1, /* allow_enum= */ false, &s->output);
                if (r < 0)
                        return r;
        }

        if (!GREEDY_REALLOC(p->symbols, p->n_symbols_allocated, p->n_symbols + 1))
                return -ENOMEM;
        p->symbols[p->n_symbols++] = TAKE_PTR(s);
        return 0;
}

static int symbol_compare(const void *a, const void *b) {
        const VarlinkSymbol *x = *(const VarlinkSymbol *const *) a, *y = *(const VarlinkSymbol *const *) b;
        int c = strcmp(x->name, y->name);

        if (c != 0)
                return c;
        /* Same name: order by position, so the later declaration counts as the duplicate. */
        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        return (x->column > y->column) - (x->column < y->column);
}

static int symbol_name_compare(const void *key, const void *elem) {
        return strcmp(key, (*(const VarlinkSymbol *const *) elem)->name);
}

static VarlinkSymbol *symbols_bsearch(VarlinkSymbol *const *by_name, size_t n, const char *name) {
        VarlinkSymbol *const *found;

        if (n == 0)
                return NULL;

        found = bsearch(name, by_name, n, sizeof(by_name[0]), symbol_name_compare);
        return found ? *found : NULL;
}

static bool position_before(unsigned line_a, unsigned column_a, unsigned line_b, unsigned column_b) {
        return line_a < line_b || (line_a == line_b && column_a < column_b);
}

/* Checks the whole-interface rules: unique symbol names, every named type reference resolves to
 * a "type". Reports the earliest offending position. On success stores the sorted index. */
static int parser_resolve(Parser *p, VarlinkSymbol ***ret_by_name) {
        _cleanup_free_ VarlinkSymbol **by_name = NULL;
        const VarlinkSymbol *dup = NULL;
        const VarlinkType *unresolved = NULL;
        const char *why = NULL;

        by_name = new(VarlinkSymbol *, p->n_symbols);
        if (!by_name)
                return -ENOMEM;
        memcpy(by_name, p->symbols, sizeof(by_name[0]) * p->n_symbols);
        qsort(by_name, p->n_symbols, sizeof(by_name[0]), symbol_compare);

        for (size_t k = 1; k < p->n_symbols; k++)
                if (streq(by_name[k - 1]->name, by_name[k]->name) &&
                    (!dup || position_before(by_name[k]->line, by_name[k]->column, dup->line, dup->column)))
                        dup = by_name[k];

        /* References were collected in text order, so the first failure is the earliest. */
        for (size_t k = 0; k < p->n_refs; k++) {
                VarlinkType *t = p->refs[k];
                const VarlinkSymbol *s = symbols_bsearch(by_name, p->n_symbols, t->name);

                if (!s)
                        why = "Undefined type";
                else if (s->kind != VARLINK_SYMBOL_TYPE)
                        why = s->kind == VARLINK_SYMBOL_METHOD ? "Method used as a type" : "Error used as a type";
                else {
                        t->symbol = s;
                        continue;
                }

                unresolved = t;
                break;
        }

        if (unresolved &&
            (!dup || position_before(unresolved->line, unresolved->column, dup->line, dup->column)))
                return parser_error_at(p, unresolved->line, unresolved->column, "%s '%s'.", why, unresolved->name);
        if (dup)
                return parser_error_at(p, dup->line, dup->column, "Duplicate name '%s'.", dup->name);

        *ret_by_name = TAKE_PTR(by_name);
        return 0;
}

static int parse_interface(Parser *p, VarlinkInterface **ret) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        char buf[48];
        int r;

        i = new0(VarlinkInterface, 1);
        if (!i)
                return -ENOMEM;

        r = parser_advance(p);
        if (r < 0)
                return r;
        if (!token_is(&p->tok, "interface"))
                return parser_error(p, &p->tok, "Expected 'interface' first, got %s.", token_describe(&p->tok, buf));

        r = parser_advance(p);
        if (r < 0)
                return r;
        if (p->tok.kind != TOKEN_WORD || !varlink_interface_name_valid(p->tok.start, p->tok.length))
                return parser_error(p, &p->tok, "Invalid interface name %s.", token_describe(&p->tok, buf));

        i->name = strndup(p->tok.start, p->tok.length);
        if (!i->name)
                return -ENOMEM;

        r = parser_advance(p);
        if (r < 0)
                return r;

        for (;;) {
                VarlinkSymbolKind kind;

                if (p->tok.kind == TOKEN_EOF)
                        break;

                if (token_is(&p->tok, "type"))
                        kind = VARLINK_SYMBOL_TYPE;
                else if (token_is(&p->tok, "method"))
                        kind = VARLINK_SYMBOL_METHOD;
                else if (token_is(&p->tok, "error"))
                        kind = VARLINK_SYMBOL_ERROR;
                else
                        return parser_error(p, &p->tok, "Expected 'type', 'method' or 'error', got %s.",
                                            token_describe(&p->tok, buf));

                /* The grammar separates the interface name and the members by line breaks. */
                if (!p->tok.newline_before)
                        return parser_error(p, &p->tok, "Declaration must start on a new line.");

                r = parse_member(p, kind);
                if (r < 0)
                        return r;
        }

        if (p->n_symbols == 0)
                return parser_error(p, &p->tok, "Interface declares no types, methods or errors.");

        r = parser_resolve(p, &i->by_name);
        if (r < 0)
                return r;

        i->methods = new(VarlinkSymbol *, p->n_symbols);
        if (!i->methods)
                return -ENOMEM;
        for (size_t k = 0; k < p->n_symbols; k++)
                if (p->symbols[k]->kind == VARLINK_SYMBOL_METHOD)
                        i->methods[i->n_methods++] = p->symbols[k];

        i->text = strdup(p->text);
        if (!i->text)
                return -ENOMEM;

        i->symbols = TAKE_PTR(p->symbols);
        i->n_symbols = p->n_symbols;
        p->n_symbols = 0;

        *ret = TAKE_PTR(i);
        return 0;
}

int varlink_interface_parse(const char *text, VarlinkInterface **ret, unsigned *ret_line, unsigned *ret_column) {
        _cleanup_(parser_done) Parser p = {
                .text = text,
                .p = text,
                .line = 1,
                .column = 1,
        };
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        int r;

        assert_return(text, -EINVAL);

        r = parse_interface(&p, &i);
        if (r == -EBADMSG) {
                if (ret_line)
                        *ret_line = p.error_line;
                if (ret_column)
                        *ret_column = p.error_column;
        }
        if (r < 0)
                return r;

        if (ret)
                *ret = TAKE_PTR(i);
        return 0;
}

/* ---- Accessors ---- */

const char *varlink_interface_get_name(const VarlinkInterface *i) {
        return i ? i->name : NULL;
}

const char *varlink_interface_get_text(const VarlinkInterface *i) {
        return i ? i->text : NULL;
}

size_t varlink_interface_get_n_methods(const VarlinkInterface *i) {
        return i ? i->n_methods : 0;
}

const VarlinkSymbol *varlink_interface_get_method_by_index(const VarlinkInterface *i, size_t idx) {
        if (!i || idx >= i->n_methods)
                return NULL;
        return i->methods[idx];
}

static const VarlinkSymbol *interface_find(const VarlinkInterface *i, VarlinkSymbolKind kind, const char *name) {
        const VarlinkSymbol *s;

        if (!i || !name)
                return NULL;

        s = symbols_bsearch(i->by_name, i->n_symbols, name);
        return s && s->kind == kind ? s : NULL;
}

const VarlinkSymbol *varlink_interface_find_method(const VarlinkInterface *i, const char *name) {
        return interface_find(i, VARLINK_SYMBOL_METHOD, name);
}

const VarlinkSymbol *varlink_interface_find_error(const VarlinkInterface *i, const char *name) {
        return interface_find(i, VARLINK_SYMBOL_ERROR, name);
}

const char *varlink_symbol_get_name(const VarlinkSymbol *s) {
        return s ? s->name : NULL;
}

bool varlink_method_requires_more(const VarlinkSymbol *method) {
        return method && method->kind == VARLINK_SYMBOL_METHOD && method->requires_more;
}

/* ---- Validation ---- */

typedef struct PathElement {
        const char *name; /* struct field or map key; NULL for an array index */
        size_t index;
        bool is_key;      /* map key, written "[key]" rather than ".name" */
        bool untrusted;   /* from the JSON, not the IDL: escape and truncate */
} PathElement;

/* The path from the parameters object to the value being checked. On failure the functions
 * return without popping, so the stack then names the offending value. */
typedef struct Validator {
        size_t n_path;
        PathElement path[VARLINK_IDL_VALIDATE_DEPTH_MAX];
} Validator;

static int validator_push(Validator *v, PathElement e) {
        /* Too deep: report the container that holds the value we refuse to descend into. */
        if (v->n_path >= VARLINK_IDL_VALIDATE_DEPTH_MAX)
                return -EINVAL;

        v->path[v->n_path++] = e;
        return 0;
}

static void validator_pop(Validator *v) {
        assert(v->n_path > 0);
        v->n_path--;
}

static bool json_is_int64(json_object *j) {
        if (!json_object_is_type(j, json_type_int))
                return false;

        /* json-c stores integers above INT64_MAX as uint64, and get_int64() clamps those to
         * INT64_MAX: tell them apart from INT64_MAX itself. */
        return json_object_get_int64(j) != INT64_MAX || json_object_get_uint64(j) == (uint64_t) INT64_MAX;
}

static bool json_is_string_without_nul(json_object *j) {
        const char *s;
        int n;

        if (!json_object_is_type(j, json_type_string))
                return false;

        /* "\u0000" would make handlers see a shorter string than the one that was validated. */
        s = json_object_get_string(j);
        n = json_object_get_string_len(j);
        return n >= 0 && strlen(s) == (size_t) n;
}

static const VarlinkField *struct_find_field(const VarlinkType *t, const char *name) {
        for (size_t k = 0; k < t->n_fields; k++)
                if (streq(t->fields[k].name, name))
                        return t->fields + k;
        return NULL;
}

static int validate_value(Validator *v, const VarlinkType *t, json_object *j);

/* j == NULL only for the top-level parameters, where it means {}. */
static int validate_struct(Validator *v, const VarlinkType *t, json_object *j) {
        size_t n_present = 0;
        int r;

        if (j && !json_object_is_type(j, json_type_object))
                return -EINVAL;

        /* Declared fields first, in declaration order, each looked up in json-c's hash table. */
        for (size_t k = 0; k < t->n_fields; k++) {
                const VarlinkField *f = t->fields + k;
                json_object *e = NULL;

                if (j && json_object_object_get_ex(j, f->name, &e))
                        n_present++;

                r = validator_push(v, (PathElement) { .name = f->name });
                if (r < 0)
                        return r;
                r = validate_value(v, f->type, e);
                if (r < 0)
                        return r;
                validator_pop(v);
        }

        if (!j || n_present == (size_t) json_object_object_length(j))
                return 0;

        /* Some key is not a declared field: name the first one. Every key before it matched a
         * distinct field, so this scan is bounded by n_fields², whatever the object's size. */
        for (struct json_object_iterator it = json_object_iter_begin(j), end = json_object_iter_end(j);
             !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                const char *key = json_object_iter_peek_name(&it);

                if (!struct_find_field(t, key)) {
                        r = validator_push(v, (PathElement) { .name = key, .untrusted = true });
                        return r < 0 ? r : -EINVAL;
                }
        }

        return 0;
}

static int validate_enum(const VarlinkType *t, json_object *j) {
        const char *s;
        size_t n;

        if (!json_object_is_type(j, json_type_string))
                return -EINVAL;

        /* Compare with the length, so "one\u0000x" does not pass as "one". */
        s = json_object_get_string(j);
        n = (size_t) json_object_get_string_len(j);
        for (size_t k = 0; k < t->n_fields; k++)
                if (strlen(t->fields[k].name) == n && memcmp(t->fields[k].name, s, n) == 0)
                        return 0;

        return -EINVAL;
}

typedef struct RawElementCheck {
        Validator *v;
        const VarlinkType *element;
} RawElementCheck;

static int validate_raw_element(json_object *element, size_t index, void *userdata) {
        RawElementCheck *check = userdata;
        int r;

        r = validator_push(check->v, (PathElement) { .index = index });
        if (r < 0)
                return r;
        r = validate_value(check->v, check->element, element);
        if (r < 0)
                return r;
        validator_pop(check->v);
        return 0;
}

static int validate_value(Validator *v, const VarlinkType *t, json_object *j) {
        int r;

        /* json-c represents JSON null as NULL. */
        if (!j || json_object_get_type(j) == json_type_null)
                return t->nullable ? 0 : -EINVAL;

        switch (t->kind) {

        case VARLINK_TYPE_BOOL:
                return json_object_is_type(j, json_type_boolean) ? 0 : -EINVAL;

        case VARLINK_TYPE_INT:
                return json_is_int64(j) ? 0 : -EINVAL;

        case VARLINK_TYPE_FLOAT:
                /* json-c accepts NaN and Infinity, which are not JSON. */
                if (json_object_is_type(j, json_type_int))
                        return 0;
                return json_object_is_type(j, json_type_double) && isfinite(json_object_get_double(j)) ? 0 : -EINVAL;

        case VARLINK_TYPE_STRING:
                return json_is_string_without_nul(j) ? 0 : -EINVAL;

        case VARLINK_TYPE_OBJECT:
                return json_object_is_type(j, json_type_object) ? 0 : -EINVAL;

        case VARLINK_TYPE_ENUM:
                return validate_enum(t, j);

        case VARLINK_TYPE_STRUCT:
                return validate_struct(v, t, j);

        case VARLINK_TYPE_NAMED:
                /* A named type is a struct or an enum, never another name: no chains to follow. */
                return validate_value(v, t->symbol->type, j);

        case VARLINK_TYPE_ARRAY: {
                size_t n;

                if (!json_object_is_type(j, json_type_array))
                        return -EINVAL;
                /* Held as its elements' text (json-raw.h), empty to json-c: checked as parsed,
                 * one element at a time. */
                if (json_raw_array_get(j, NULL, NULL, NULL)) {
                        RawElementCheck check = { v, t->element };

                        return json_raw_array_foreach(j, validate_raw_element, &check);
                }

                n = json_object_array_length(j);
                for (size_t k = 0; k < n; k++) {
                        r = validator_push(v, (PathElement) { .index = k });
                        if (r < 0)
                                return r;
                        r = validate_value(v, t->element, json_object_array_get_idx(j, k));
                        if (r < 0)
                                return r;
                        validator_pop(v);
                }
                return 0;
        }

        case VARLINK_TYPE_MAP:
                if (!json_object_is_type(j, json_type_object))
                        return -EINVAL;

                for (struct json_object_iterator it = json_object_iter_begin(j), end = json_object_iter_end(j);
                     !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                        r = validator_push(v, (PathElement) {
                                                      .name = json_object_iter_peek_name(&it),
                                                      .is_key = true,
                                                      .untrusted = true,
                                              });
                        if (r < 0)
                                return r;
                        r = validate_value(v, t->element, json_object_iter_peek_value(&it));
                        if (r < 0)
                                return r;
                        validator_pop(v);
                }
                return 0;
        }

        assert(false);
        return -EINVAL;
}

typedef struct Buffer {
        char *data;
        size_t size, allocated;
} Buffer;

static int buffer_append(Buffer *b, const char *s, size_t n) {
        if (!GREEDY_REALLOC(b->data, b->allocated, b->size + n + 1))
                return -ENOMEM;

        memcpy(b->data + b->size, s, n);
        b->size += n;
        b->data[b->size] = 0;
        return 0;
}

static int buffer_append_escaped(Buffer *b, const char *s, const char *special) {
        size_t n = strlen(s);
        int r;

        for (size_t k = 0; k < MIN(n, (size_t) PATH_COMPONENT_MAX); k++) {
                unsigned char c = (unsigned char) s[k];

                if (c < 0x20 || c >= 0x7f || strchr(special, c)) {
                        char hex[5];

                        (void) snprintf(hex, sizeof(hex), "\\x%02x", c);
                        r = buffer_append(b, hex, 4);
                } else
                        r = buffer_append(b, s + k, 1);
                if (r < 0)
                        return r;
        }

        return n > PATH_COMPONENT_MAX ? buffer_append(b, "...", 3) : 0;
}

static int validator_format_path(const Validator *v, char **ret) {
        _cleanup_free_ char *data = NULL;
        Buffer b = {};
        int r = 0;

        if (v->n_path == 0) {
                /* The parameters value itself is not an object: name it as the Varlink call does. */
                data = strdup("parameters");
                if (!data)
                        return -ENOMEM;
                *ret = TAKE_PTR(data);
                return 0;
        }

        for (size_t k = 0; k < v->n_path && r >= 0; k++) {
                const PathElement *e = v->path + k;

                if (!e->name) {
                        char idx[2 + 20 + 1];
                        int n = snprintf(idx, sizeof(idx), "[%zu]", e->index);

                        r = buffer_append(&b, idx, (size_t) n);
                } else if (e->is_key) {
                        r = buffer_append(&b, "[", 1);
                        if (r >= 0)
                                r = buffer_append_escaped(&b, e->name, "\\[]");
                        if (r >= 0)
                                r = buffer_append(&b, "]", 1);
                } else {
                        if (k > 0)
                                r = buffer_append(&b, ".", 1);
                        if (r >= 0)
                                r = e->untrusted ? buffer_append_escaped(&b, e->name, "\\[].")
                                                 : buffer_append(&b, e->name, strlen(e->name));
                }
        }

        data = b.data;
        if (r < 0)
                return r;

        *ret = TAKE_PTR(data);
        return 0;
}

static int validate_parameters(const VarlinkType *t, json_object *parameters, char **ret_bad_field) {
        Validator v;
        int r;

        v.n_path = 0;

        r = validate_struct(&v, t, parameters);
        if (r == -EINVAL && ret_bad_field) {
                int k = validator_format_path(&v, ret_bad_field);
                if (k < 0)
                        return k;
        }

        return r;
}

int varlink_method_validate_input(const VarlinkSymbol *method, json_object *parameters, char **ret_bad_field) {
        if (!method || method->kind != VARLINK_SYMBOL_METHOD)
                return -EBADMSG;

        return validate_parameters(method->type, parameters, ret_bad_field);
}

int varlink_method_validate_output(const VarlinkSymbol *method, json_object *parameters, char **ret_bad_field) {
        if (!method || method->kind != VARLINK_SYMBOL_METHOD)
                return -EBADMSG;

        return validate_parameters(method->output, parameters, ret_bad_field);
}

int varlink_error_validate(const VarlinkSymbol *error, json_object *parameters, char **ret_bad_field) {
        if (!error || error->kind != VARLINK_SYMBOL_ERROR)
                return -EBADMSG;

        return validate_parameters(error->type, parameters, ret_bad_field);
}
