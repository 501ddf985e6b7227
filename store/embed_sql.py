#!/usr/bin/env python3
"""embed_sql.py IN OUT: turns schema.sql into a C file holding each '-- version N' section
as a string, so the binary carries its schema and needs no file at run time."""
import re
import sys


def c_string(text):
    out = []
    for line in text.splitlines():
        esc = line.replace('\\', '\\\\').replace('"', '\\"')
        out.append('    "%s\\n"' % esc)
    return '\n'.join(out) if out else '    ""'


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding='utf-8') as f:
        text = f.read()
    parts = re.split(r'^-- version (\d+)\s*$', text, flags=re.M)
    sections = []
    for i in range(1, len(parts), 2):
        version = int(parts[i])
        if version != len(sections) + 1:
            sys.exit('%s: version %d out of order' % (src, version))
        sections.append(parts[i + 1])
    if not sections:
        sys.exit('%s: no "-- version N" section' % src)
    with open(dst, 'w', encoding='utf-8') as f:
        f.write('/* generated from schema.sql by embed_sql.py: do not edit */\n')
        f.write('#include "schema_sql.h"\n\n')
        f.write('const int store_schema_version = %d;\n\n' % len(sections))
        f.write('const char *const store_schema_sections[] = {\n')
        for s in sections:
            f.write(c_string(s) + ',\n')
        f.write('};\n')


if __name__ == '__main__':
    main()
