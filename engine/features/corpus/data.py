"""Code-like and structured generators: Python, JavaScript, SQL, JSON, HTML, CSV, arithmetic, lists.

Why: real corpora are full of code, numbers and markup, and those give models many of their most
distinctive features (brackets, indentation, digits, keywords); a prose-only corpus would hide them.
"""

from __future__ import annotations

import json
import random

from engine.features.corpus.fill import fill
from engine.features.corpus.lexicon import CATEGORIES


def python_code(r: random.Random) -> str:
    name, arg, other = fill("{var}", r), fill("{var}", r), fill("{var}", r)
    body = r.choice((
        f"    total = 0\n    for item in {arg}:\n        total += item * {r.randint(2, 9)}\n    return total",
        f"    if {arg} is None:\n        raise ValueError(\"{arg} is required\")\n    return {arg}.strip().lower()",
        f"    result = [{other} for {other} in {arg} if {other} > {r.randint(0, 99)}]\n    return sorted(result)",
        f"    with open(\"{fill('{animal}', r)}.txt\") as f:\n        return [line.rstrip() for line in f]",
        f"    {other} = {{}}\n    for key, value in {arg}.items():\n        {other}[value] = key\n    return {other}",
        f"    try:\n        return int({arg})\n    except ValueError:\n        return {r.randint(-1, 10)}",
    ))
    doc = f'    """Return the {fill("{quality_adjective}", r)} {fill("{computing}", r)} for {arg}."""\n'
    head = "import math\n\n" if r.random() < 0.3 else ""
    cls = r.random() < 0.25
    text = f"{head}def {name}({arg}):\n{doc if r.random() < 0.5 else ''}{body}\n"
    if cls:
        text = f"class {fill('{Animal}', r)}{fill('{Tool}', r)}:\n" + "\n".join("    " + ln for ln in text.splitlines()) + "\n"
    if r.random() < 0.4:
        text += f"\n\nprint({name}([{', '.join(str(r.randint(0, 50)) for _ in range(r.randint(2, 5)))}]))\n"
    return text


def javascript_code(r: random.Random) -> str:
    name, arg = fill("{var}", r), fill("{var}", r)
    return r.choice((
        f"function {name}({arg}) {{\n  const n = {arg}.length;\n  return n > {r.randint(1, 9)} ? \"{fill('{color}', r)}\" : null;\n}}\n",
        f"const {name} = ({arg}) => {arg}.map((x) => x * {r.randint(2, 9)}).filter(Boolean);\n",
        f"document.getElementById(\"{fill('{animal}', r)}\").addEventListener(\"click\", () => {{\n  console.log(\"{fill('{emotion}', r)}\");\n}});\n",
        f"let {name} = {{ id: {r.randint(1, 999)}, name: \"{fill('{First_name}', r)}\", active: {r.choice(('true', 'false'))} }};\n",
    ))


def sql_query(r: random.Random) -> str:
    table = fill("{animal}", r) + "s"
    col, col2 = fill("{var}", r), fill("{var}", r)
    return r.choice((
        f"SELECT {col}, {col2} FROM {table} WHERE {col} > {r.randint(0, 500)} ORDER BY {col2} DESC LIMIT {r.randint(1, 50)};",
        f"INSERT INTO {table} ({col}, {col2}) VALUES ('{fill('{First_name}', r)}', {r.randint(0, 99)});",
        f"UPDATE {table} SET {col} = '{fill('{color}', r)}' WHERE id = {r.randint(1, 9999)};",
        f"SELECT COUNT(*) FROM {table} GROUP BY {col} HAVING COUNT(*) > {r.randint(1, 20)};",
    ))


def json_record(r: random.Random) -> str:
    record = {
        "id": r.randint(1, 99999),
        "name": fill("{full_name}", r),
        "city": fill("{City}", r),
        "email": fill("{email}", r),
        "tags": r.sample(CATEGORIES[r.choice(("fruit", "color", "sport", "genre"))], 3),
        "score": round(r.uniform(0, 1), 3),
        "active": r.random() < 0.5,
    }
    keys = r.sample(list(record), r.randint(3, len(record)))
    return json.dumps({k: record[k] for k in keys}, indent=r.choice((None, 2)))


def html_snippet(r: random.Random) -> str:
    tag = r.choice(("div", "p", "span", "section", "li"))
    return (
        f"<{tag} class=\"{fill('{color}', r)}-{fill('{shape}', r)}\">\n"
        f"  <a href=\"{fill('{url}', r)}\">{fill('{Quality_adjective} {dish} in {City}', r)}</a>\n"
        f"  <img src=\"/img/{fill('{animal}', r)}.png\" alt=\"{fill('{size_adjective} {animal}', r)}\" width=\"{r.randint(10, 800)}\">\n"
        f"</{tag}>\n"
    )


def csv_table(r: random.Random) -> str:
    rows = ["name,city,age,score"]
    for _ in range(r.randint(3, 8)):
        rows.append(f"{fill('{full_name}', r)},{fill('{City}', r)},{r.randint(18, 90)},{r.uniform(0, 100):.1f}")
    return "\n".join(rows)


def arithmetic(r: random.Random) -> str:
    lines = []
    for _ in range(r.randint(3, 8)):
        a, b = r.randint(0, 999), r.randint(1, 99)
        op = r.choice("+-*/")
        value = {"+": a + b, "-": a - b, "*": a * b, "/": round(a / b, 2)}[op]
        style = r.randrange(3)
        if style == 0:
            lines.append(f"{a} {op} {b} = {value}")
        elif style == 1:
            lines.append(f"What is {a} {op} {b}? The answer is {value}.")
        else:
            lines.append(f"x = {a}; y = {b}; x {op} y == {value}")
    return "\n".join(lines)


def item_list(r: random.Random) -> str:
    category = r.choice(("fruit", "vegetable", "tool", "clothing", "drink", "furniture", "dish"))
    bullet = r.choice(("- ", "* ", "1. ", "• "))
    items = r.sample(CATEGORIES[category], r.randint(3, 7))
    head = fill(r.choice(("Shopping list for {weekday}:", "To buy:", "Things to pack for {City}:", "Inventory ({date}):")), r)
    out = [head]
    for i, item in enumerate(items, 1):
        prefix = f"{i}. " if bullet == "1. " else bullet
        qty = f"{r.randint(1, 12)} x " if r.random() < 0.4 else ""
        out.append(f"{prefix}{qty}{item}")
    return "\n".join(out)


def contacts(r: random.Random) -> str:
    return "\n".join(
        fill(t, r) for t in r.sample((
            "Name: {full_name}", "Email: {email}", "Phone: {phone}", "Website: {url}",
            "Address: {num} {Plant} Street, {City}, {Country}", "Born: {date}", "Job: {occupation}",
        ), r.randint(3, 6))
    )


def schedule(r: random.Random) -> str:
    days = CATEGORIES["weekday"][: r.randint(2, 7)]
    return "\n".join(fill(f"{d} {{time}}: {{sport}} with {{First_name}} at the {{building}}", r) for d in days)


DATA_GENERATORS = {
    "python": python_code, "javascript": javascript_code, "sql": sql_query, "json": json_record,
    "html": html_snippet, "csv": csv_table, "arithmetic": arithmetic, "list": item_list,
    "contacts": contacts, "schedule": schedule,
}
