#!/usr/bin/env python3
"""embed.py NAME IN OUT: writes a C file defining `const char NAME[]` with IN's bytes and
`const size_t NAME_len`, after checking that IN is valid JSON."""
import json
import sys


def main():
    name, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(src, 'rb') as f:
        data = f.read()
    json.loads(data)  # a broken document fails the build, not a client
    with open(dst, 'w', encoding='ascii') as f:
        f.write('/* generated from %s by embed.py: do not edit */\n' % src.split('/')[-1])
        f.write('#include <stddef.h>\n\n')
        f.write('const char %s[] =\n' % name)
        for i in range(0, len(data), 64):
            chunk = data[i:i + 64]
            f.write('    "%s"\n' % ''.join('\\x%02x' % b for b in chunk))
        f.write('    ;\n')
        f.write('const size_t %s_len = sizeof %s - 1;\n' % (name, name))


if __name__ == '__main__':
    main()
