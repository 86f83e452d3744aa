"""Word lists by topic: the raw material of the generated corpus, and the builtin explainer's concepts.

Why here and mlx-free: the generator fills templates from these lists, and the builtin explainer
(orchestrator side) uses the same lists as its notion of a "concept" (e.g. to write inputs that carry
the concept without the surface tokens it saw). Lower-case unless the word is a proper noun.
"""

from __future__ import annotations

from functools import lru_cache


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": _w("cat dog horse cow sheep goat pig rabbit mouse rat lion tiger bear wolf fox deer elephant giraffe "
                 "zebra monkey gorilla kangaroo camel donkey squirrel hedgehog otter badger beaver bat moose leopard "
                 "cheetah panda koala hamster raccoon buffalo"),
    "bird": _w("eagle hawk owl sparrow robin crow pigeon parrot penguin swan duck goose falcon heron seagull "
               "woodpecker flamingo ostrich peacock pelican raven finch stork vulture canary"),
    "sea_creature": _w("shark whale dolphin octopus squid crab lobster shrimp salmon tuna cod jellyfish seal "
                       "starfish oyster clam eel trout herring sardine walrus"),
    "insect": _w("ant bee wasp butterfly moth beetle fly mosquito spider grasshopper cricket ladybug dragonfly "
                 "termite flea caterpillar cockroach"),
    "fruit": _w("apple banana orange pear peach plum cherry grape lemon lime mango pineapple strawberry "
                "raspberry blueberry melon watermelon kiwi apricot coconut fig papaya"),
    "vegetable": _w("carrot potato onion garlic tomato cucumber lettuce spinach cabbage broccoli pepper pea bean "
                    "corn pumpkin celery radish beet mushroom zucchini"),
    "dish": _w("soup salad sandwich pizza pasta burger stew curry omelette pancake risotto lasagna sushi taco "
               "noodles dumplings casserole pie cake bread porridge"),
    "drink": _w("coffee tea water milk juice wine beer lemonade cocoa soda whisky cider smoothie espresso champagne"),
    "city": _w("Paris London Berlin Madrid Rome Vienna Prague Warsaw Lisbon Dublin Oslo Stockholm Helsinki Athens "
               "Cairo Lagos Nairobi Tokyo Beijing Shanghai Seoul Delhi Mumbai Bangkok Sydney Melbourne Toronto "
               "Chicago Boston Seattle Denver Houston Mexico Lima Bogota Santiago Istanbul Moscow Dubai Singapore"),
    "country": _w("France Germany Spain Italy Portugal Ireland Norway Sweden Finland Greece Egypt Nigeria Kenya "
                  "Japan China Korea India Thailand Australia Canada Brazil Argentina Chile Peru Mexico Turkey "
                  "Russia Poland Austria Belgium Denmark Switzerland Vietnam Indonesia Morocco Ghana"),
    "landform": _w("mountain river lake valley hill forest desert island beach coast canyon glacier volcano "
                   "meadow swamp cliff cave plateau waterfall prairie"),
    "first_name": _w("Mary John James Anna Peter Sarah David Laura Michael Emma Robert Alice Thomas Sophie Daniel "
                     "Olivia William Grace Henry Lucy George Chloe Paul Hannah Mark Julia Steven Clara Oliver Nina "
                     "Jacob Eva Samuel Rachel Adam Maria Luke Helen"),
    "surname": _w("Smith Johnson Brown Taylor Miller Wilson Moore Clark Lewis Walker Hall Allen Young King Wright "
                  "Scott Green Baker Adams Nelson Carter Mitchell Turner Parker Evans Collins Stewart Morris Cooper "
                  "Reed Bailey Bell Murphy Rivera Cook"),
    "occupation": _w("doctor nurse teacher lawyer engineer farmer baker chef pilot soldier scientist artist writer "
                     "singer actor driver plumber carpenter electrician judge banker accountant architect journalist "
                     "librarian mechanic dentist professor student manager"),
    "body_part": _w("head hand arm leg foot knee elbow shoulder neck back chest heart lung liver stomach eye ear "
                    "nose mouth tooth finger toe skin bone brain"),
    "illness": _w("fever cough flu cold infection headache migraine diabetes asthma cancer allergy pneumonia "
                  "fracture injury rash measles malaria arthritis anemia insomnia"),
    "emotion": _w("joy anger fear sadness surprise disgust love hope pride shame guilt envy relief anxiety grief "
                  "delight boredom curiosity gratitude loneliness"),
    "color": _w("red blue green yellow orange purple pink brown black white grey gold silver violet crimson "
                "turquoise beige maroon navy teal"),
    "clothing": _w("shirt jacket coat dress skirt trousers jeans sweater hat scarf gloves boots shoes socks tie "
                   "belt uniform hoodie sandals vest"),
    "furniture": _w("table chair sofa bed desk shelf cupboard wardrobe lamp mirror carpet curtain drawer bench "
                    "stool cabinet couch mattress bookcase"),
    "tool": _w("hammer screwdriver wrench saw drill pliers chisel shovel rake axe ladder knife scissors needle "
               "brush spanner tape glue nail screw"),
    "vehicle": _w("car bus train truck bicycle motorcycle tram ship boat plane helicopter taxi van tractor scooter "
                  "ferry submarine rocket yacht ambulance"),
    "sport": _w("football soccer tennis golf cricket rugby basketball baseball hockey swimming cycling boxing "
                "skiing rowing volleyball badminton wrestling sailing climbing marathon"),
    "instrument": _w("piano guitar violin cello drum flute trumpet saxophone clarinet harp organ banjo trombone "
                     "oboe accordion ukulele harmonica"),
    "genre": _w("jazz blues rock pop reggae opera hip-hop techno folk country punk metal soul funk classical disco"),
    "weather": _w("rain snow wind storm thunder lightning fog hail frost sunshine cloud drizzle blizzard hurricane "
                  "tornado heatwave mist breeze sleet drought"),
    "plant": _w("oak pine maple birch willow rose tulip daisy lily sunflower fern moss cactus ivy bamboo orchid "
                "lavender clover grass palm"),
    "element": _w("hydrogen helium carbon nitrogen oxygen sodium magnesium aluminium silicon phosphorus sulfur "
                  "chlorine potassium calcium iron copper zinc silver gold mercury lead uranium"),
    "astronomy": _w("Mercury Venus Earth Mars Jupiter Saturn Uranus Neptune Pluto moon sun comet asteroid galaxy "
                    "nebula star planet orbit telescope meteor"),
    "programming_language": _w("Python Java JavaScript Rust Go Ruby Haskell Kotlin Swift Perl Scala Fortran Lisp "
                               "TypeScript Julia Erlang Elixir Lua"),
    "computing": _w("server database compiler kernel browser router network cache thread process function variable "
                    "array pointer algorithm bug keyboard laptop software hardware password"),
    "finance": _w("stock bond share dividend profit revenue loss debt loan interest inflation budget tax salary "
                  "invoice mortgage equity asset investor bank"),
    "law": _w("court judge jury lawyer trial verdict contract lawsuit plaintiff defendant appeal statute witness "
              "evidence sentence custody warrant attorney clause tribunal"),
    "politics": _w("election parliament senate president minister vote campaign policy government party democracy "
                   "referendum governor mayor cabinet constitution treaty ambassador"),
    "military": _w("army navy tank soldier general battle war missile fleet troops regiment siege fortress "
                   "admiral sergeant battalion artillery ceasefire"),
    "school": _w("mathematics physics chemistry biology history geography literature philosophy economics "
                 "psychology sociology algebra geometry grammar astronomy linguistics"),
    "family": _w("mother father sister brother son daughter uncle aunt cousin grandmother grandfather wife husband "
                 "niece nephew parent child baby"),
    "month": _w("January February March April May June July August September October November December"),
    "weekday": _w("Monday Tuesday Wednesday Thursday Friday Saturday Sunday"),
    "material": _w("wood stone glass steel plastic paper cotton wool leather silk concrete brick clay rubber "
                   "marble copper iron bronze"),
    "shape": _w("circle square triangle rectangle oval sphere cube cone cylinder pyramid hexagon diamond spiral "
                "star line curve"),
    "building": _w("house church school hospital castle tower bridge museum library station airport factory "
                   "temple palace stadium cottage barn warehouse theatre hotel"),
    "motion_verb": _w("walked ran jumped climbed swam flew drove rode crawled danced wandered hurried rushed "
                      "marched sprinted strolled"),
    "speech_verb": _w("said asked replied shouted whispered answered explained argued insisted complained "
                      "announced admitted muttered declared"),
    "cognition_verb": _w("thought believed knew remembered forgot realized wondered decided doubted understood "
                         "imagined assumed guessed noticed"),
    "size_adjective": _w("big small large tiny huge enormous little giant massive vast narrow wide tall short "
                         "thick thin"),
    "quality_adjective": _w("good bad excellent terrible wonderful awful beautiful ugly brilliant poor great fine "
                            "lovely horrible perfect decent"),
    "time_unit": _w("second minute hour day week month year decade century millennium"),
    "number_word": _w("one two three four five six seven eight nine ten eleven twelve twenty thirty hundred "
                      "thousand million billion"),
    "currency": _w("dollar euro pound yen rupee franc peso dinar yuan krona"),
    "negation": _w("not never no none nobody nothing nowhere neither nor cannot"),
}

# Single-character and symbol classes used by the data/code generators and by concept predicates.
SYMBOL_CLASSES: dict[str, str] = {
    "digit": r"^\d+$",
    "punctuation": r"^[.,;:!?]+$",
    "bracket": r"^[\[\](){}<>]+$",
    "operator": r"^[-+*/=%<>!&|^]+$",
    "quote": r"^[\"'`]+$",
    "capitalised": r"^[A-Z][a-z]+$",
    "upper": r"^[A-Z]{2,}$",
}


@lru_cache(maxsize=1)
def word_index() -> dict[str, tuple[str, ...]]:
    """Lower-cased word -> the categories it belongs to (a word can be in several, e.g. 'Mercury')."""
    index: dict[str, list[str]] = {}
    for category, words in CATEGORIES.items():
        for word in words:
            index.setdefault(word.lower(), []).append(category)
    return {w: tuple(cats) for w, cats in index.items()}


def categories_of(word: str) -> tuple[str, ...]:
    """The categories of ``word`` (case-insensitive, surrounding spaces/punctuation ignored)."""
    return word_index().get(word.strip().strip(".,;:!?\"'()").lower(), ())
