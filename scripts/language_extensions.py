"""template.yaml as the AWS::LanguageExtensions transform leaves it, for the template tests and the
release bundle (scripts/bundle), offline: each Fn::ForEach expanded, and the transform dropped.

Only what the template uses, checked rather than guessed: Fn::ForEach::NAME [Identifier,
[literal, ...], {OutputKey: OutputValue}] in Resources, Conditions and Outputs (nested too). In
the fragment, ${Identifier} and &{Identifier} (non-alphanumerics dropped) are replaced in keys and
in Fn::Sub strings, and {Ref: Identifier} becomes the item, as CloudFormation's documentation of
Fn::ForEach says; an identifier left anywhere else is refused. The fragments made are then
simplified as the transform resolves what it can: a Fn::FindInMap of literal keys becomes its
value, a Fn::Sub variable bound to a literal is put in its text, and a Fn::Sub with no ${name}
left becomes that string. A mapping no intrinsic uses any more goes with the loops.

The template is CloudFormation's long form ({"Ref": ...}, {"Fn::Sub": ...}); load() reads
template.yaml's short tags into it.
"""

import copy
import re

import yaml

TRANSFORM = "AWS::LanguageExtensions"
FOREACH = "Fn::ForEach::"
SECTIONS = ("Conditions", "Resources", "Outputs")
SUB_NAME = re.compile(r"\$\{([^}!][^}]*)\}")


class Refused(Exception):
    pass


class Loader(yaml.SafeLoader):
    """CloudFormation's short tags (!Ref, !Sub, !GetAtt a.b, ...) read in their long form."""


def _tag(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


Loader.add_constructor("!Ref", _tag("Ref"))
Loader.add_constructor("!Condition", _tag("Condition"))
for _fn in ["GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "FindInMap",
            "ImportValue", "GetAZs", "Base64", "Cidr", "Length", "ToJsonString"]:
    Loader.add_constructor(f"!{_fn}", _tag(f"Fn::{_fn}"))


def load(text):
    return yaml.load(text, Loader=Loader)


def uses(template):
    transform = template.get("Transform", [])
    return TRANSFORM in (transform if isinstance(transform, list) else [transform])


def expand(template):
    """A copy of the template with every Fn::ForEach expanded and AWS::LanguageExtensions gone from
    its Transform (a template without the transform is returned as it is)."""
    if not uses(template):
        return template
    out = copy.deepcopy(template)
    mappings = out.get("Mappings", {})
    for section in SECTIONS:
        if section in out:
            out[section] = _section(out[section], {}, mappings)
    used = {m["Fn::FindInMap"][0] for m in _mappings_in(out) if isinstance(m["Fn::FindInMap"][0], str)}
    for name in [n for n in mappings if n not in used]:
        del mappings[name]
    if "Mappings" in out and not out["Mappings"]:
        del out["Mappings"]
    rest = [t for t in out["Transform"] if t != TRANSFORM] if isinstance(out["Transform"], list) else []
    if rest:
        out["Transform"] = rest[0] if len(rest) == 1 else rest
    else:
        del out["Transform"]
    _refuse_leftovers(out)
    return out


def _section(entries, bound, mappings):
    """A section's (or a fragment's) entries with their loops expanded, in order."""
    out = {}
    for key, value in entries.items():
        if key.startswith(FOREACH):
            made = _loop(key, value, bound, mappings)
        else:
            made = {_substitute_key(key, bound): _value(value, bound, mappings) if bound else value}
        for name, item in made.items():
            if name in out:
                raise Refused(f"{key}: {name} is made twice")
            out[name] = item
    return out


def _loop(key, value, bound, mappings):
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[2], dict)):
        raise Refused(f"{key}: not [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = value
    if not (isinstance(collection, list) and collection and all(isinstance(i, str) for i in collection)):
        raise Refused(f"{key}: the collection is not a list of strings (only literal lists are expanded here)")
    if len(set(collection)) != len(collection):
        raise Refused(f"{key}: the collection repeats an item")
    if identifier in bound:
        raise Refused(f"{key}: the identifier {identifier} is an outer loop's")
    out = {}
    for item in collection:
        for name, made in _section(fragment, {**bound, identifier: item}, mappings).items():
            if name in out:
                raise Refused(f"{key}: {name} is made twice")
            out[name] = made
    return out


def _substitute_key(key, bound):
    for identifier, item in bound.items():
        key = key.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item))
    return key


def _value(value, bound, mappings):
    """A fragment's value with the loop's items put in, then simplified."""
    if isinstance(value, list):
        return [_value(v, bound, mappings) for v in value]
    if isinstance(value, str):
        if any(f"{{{identifier}}}" in value for identifier in bound):
            raise Refused(f"{value!r}: a loop's identifier outside a key, a Fn::Sub or a Ref")
        return value
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(fn, arg)] = value.items()
        if fn == "Ref" and isinstance(arg, str) and arg in bound:
            return bound[arg]
        if fn == "Ref":
            target = _value(arg, bound, mappings)
            return {"Ref": target}
        if fn == "Fn::Sub":
            return _sub(arg, bound, mappings)
        if fn == "Fn::FindInMap":
            return _find_in_map([_value(a, bound, mappings) for a in arg], mappings)
    return {_substitute_key(k, bound): _value(v, bound, mappings) for k, v in value.items()}


def _sub(arg, bound, mappings):
    text, variables = (arg, {}) if isinstance(arg, str) else arg
    text = _substitute_key(text, bound)
    variables = {k: _value(v, bound, mappings) for k, v in variables.items()}
    for name in [k for k, v in variables.items() if isinstance(v, str) and "${" not in v]:
        text = text.replace(f"${{{name}}}", variables.pop(name))
    if variables:
        return {"Fn::Sub": [text, variables]}
    return text if not SUB_NAME.search(text) else {"Fn::Sub": text}


def _find_in_map(args, mappings):
    if len(args) == 3 and all(isinstance(a, str) for a in args):
        name, top, second = args
        try:
            return copy.deepcopy(mappings[name][top][second])
        except KeyError:
            raise Refused(f"Fn::FindInMap {args}: no such entry in Mappings") from None
    return {"Fn::FindInMap": args}


def _mappings_in(value):
    if isinstance(value, dict):
        if len(value) == 1 and "Fn::FindInMap" in value:
            yield value
        for v in value.values():
            yield from _mappings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _mappings_in(v)


def _refuse_leftovers(template):
    """No loop left, and no ${...} of a loop anywhere (an identifier where it is not replaced)."""
    for section in SECTIONS:
        for key in template.get(section, {}):
            if key.startswith(FOREACH) or "${" in key or "&{" in key:
                raise Refused(f"{section}: {key} is left after the expansion")
