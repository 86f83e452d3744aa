"""English prose generators: stories, news, biographies, recipes, reports, letters, dialogues.

Each generator is a list of sentence templates over the lexicon's slots; a document samples a few.
Varied syntax matters more than realism: latents need many distinct contexts to respond to.
"""

from __future__ import annotations

import random

from engine.features.corpus.fill import fill, paragraph

STORY = (
    "{First_name1} {motion_verb} to the {building} with a {animal} that had followed {First_name1} since {weekday}.",
    "\"Where is the {tool}?\" {first_name} {speech_verb}, looking at the {color} {furniture}.",
    "The {animal} was {size_adjective} and {quality_adjective}, and it slept under the {furniture}.",
    "Nobody {cognition_verb} that the {vehicle} would arrive before {time}.",
    "By the time the {weather} stopped, {First_name} had {motion_verb} all the way to the {landform}.",
    "{First_name} felt a sudden {emotion} when {First_name} saw the {bird} on the roof of the {building}.",
    "Her {family} had once been a {occupation} in {City}, long before the {military} came.",
    "They ate {dish} and drank {drink} while the {weather} beat against the windows.",
    "In the {ordinal} chapter, the {occupation} {cognition_verb} that the {tool} was missing.",
    "The old {building} smelled of {material} and {fruit}, and a {insect} buzzed near the lamp.",
    "{First_name} {speech_verb}, \"I never {cognition_verb} you would come back to {City}.\"",
    "It was {date}, and the {landform} was covered in {weather}.",
    "A {size_adjective} {sea_creature} swam past the {vehicle} as the sun went down.",
    "With a {tool} in one hand and a {fruit} in the other, the {occupation} {motion_verb} home.",
    "The {family} wore a {color} {clothing} and carried a {instrument} to the {building}.",
    "Years later, {first_name} still {cognition_verb} the {emotion} of that {weekday} in {Month}.",
)
NEWS = (
    "The {politics} in {Country} announced a new {finance} plan on {weekday}.",
    "Officials said the {military} would withdraw from the border by {date}.",
    "Shares in {company} rose {pct} after the firm reported {finance} of {price} million.",
    "The {law} ruled that the {law} had been signed without the {occupation}'s consent.",
    "Voters in {City} will decide the {politics} in {Month}, according to a poll of {big} adults.",
    "{Full_name}, a {occupation} from {City}, told reporters that {negation} agreement had been reached.",
    "Inflation in {Country} reached {pct} in {Month}, the highest level since {year}.",
    "The {politics} met in {City} to discuss the {law} and the {finance} of the region.",
    "A {weather} hit the coast of {Country} on {date}, leaving {big} homes without power.",
    "Prosecutors said the {law} would resume after the {law} heard from a second {law}.",
    "The central {finance} raised {finance} rates by {float} points to curb {finance}.",
    "{company} plans to open a {building} in {City} and hire {num} workers.",
)
BIOGRAPHY = (
    "{Full_name} (born {date} in {City}, {Country}) is a {occupation} and {occupation}.",
    "{First_name1} studied {school} at the university and later moved to {City}.",
    "In {year}, {First_name1} married a {occupation} and had {number_word} children.",
    "{First_name1} is best known for work on {school} and a book about {animal}s.",
    "After the {military} of {year}, the family moved to {Country}, where {First_name1} learned to play the {instrument}.",
    "{First_name1} died on {date} at the age of {small}0.",
    "{First_name1}'s {family} was a {occupation} who loved {genre} music.",
    "The award was given to {Full_name} in {decade} for services to {school}.",
)
RECIPE = (
    "Chop {small} {vegetable}s and {number_word} cloves of garlic.",
    "Add {num} grams of {vegetable} and a pinch of salt to the {dish}.",
    "Stir in {small} tablespoons of {fruit} juice and simmer for {small} minutes.",
    "Serve the {dish} with a glass of {drink} and slices of {fruit}.",
    "Preheat the oven to {small}0 degrees and bake the {dish} for {num} minutes.",
    "This {dish} is {quality_adjective} with {vegetable}, {vegetable} and fresh {plant}.",
    "Whisk {number_word} eggs with {num} ml of {drink} until smooth.",
    "For a vegetarian version, replace the {sea_creature} with {vegetable}.",
)
WEATHER = (
    "Expect {weather} in {City} on {weekday}, with temperatures around {temp}.",
    "A band of {weather} will move across {Country} overnight, followed by {weather}.",
    "The forecast for {Month} is {quality_adjective}: mostly {weather} with a chance of {weather}.",
    "Winds of {num} km/h are likely near the {landform}, and {weather} may reach the {landform} by {time}.",
    "Yesterday's high was {temp} and the low was {temp}, with {float} mm of {weather}.",
)
SPORT = (
    "{team} beat {team} {score} in the {sport} final on {weekday}.",
    "The {sport} season starts in {Month}, and {team} are favourites again.",
    "{Full_name} won the {sport} title after a {quality_adjective} match lasting {small} hours.",
    "In {year}, the {sport} championship was held in {City} in front of {big} fans.",
    "The coach {speech_verb} that the team had {cognition_verb} the {weather} would help them.",
    "After {num} minutes the score was {score}, and the crowd {speech_verb} for a penalty.",
)
TRAVEL = (
    "We took the {vehicle} from {City} to {City} and arrived at {time}.",
    "The view of the {landform} from the {building} was {quality_adjective}.",
    "In {Country}, we tried {dish} with {vegetable} and a strange {color} {drink}.",
    "Our hotel near the {landform} cost {price} a night, which felt {quality_adjective}.",
    "On {weekday} we {motion_verb} along the {landform} and saw a {bird} and a {animal}.",
    "If you visit {City} in {Month}, bring a {clothing} because of the {weather}.",
)
SCIENCE = (
    "{Element} has the atomic number {small} and is found in {material}.",
    "The planet {Astronomy} takes about {num} days to complete one {astronomy}.",
    "In {school}, students learn that {element} reacts with {element} to form a compound.",
    "A {insect} can carry {small} times its own weight, a fact studied in {school}.",
    "Researchers measured {num} samples of {material} at {temp} and found a {pct} change.",
    "The {astronomy} was first observed through a {astronomy} in {year}.",
    "The {body_part} uses {element} to carry signals, which is why {illness} can affect it.",
)
MEDICAL = (
    "The patient, a {small}0-year-old {occupation}, presented with {illness} and a {body_part} {illness}.",
    "Symptoms included {illness}, pain in the {body_part}, and {emotion}.",
    "The {occupation} prescribed {num} mg twice daily for {small} days.",
    "A scan of the {body_part} showed no sign of {illness}.",
    "Follow-up is booked for {date} at {time} with the {occupation}.",
)
REVIEW = (
    "I bought this {color} {clothing} for {price} and it is {quality_adjective}.",
    "The {furniture} arrived in {small} days, but the {material} was {quality_adjective}.",
    "Rating: {small}/10. The {tool} works, but the handle is {size_adjective}.",
    "Would not recommend this {vehicle}; the seats are {quality_adjective} and it is too {size_adjective}.",
    "My {family} loves the new {instrument}, though it was {quality_adjective} value at {price}.",
)
LETTER = (
    "Dear {First_name},",
    "I hope this letter finds you well in {City}.",
    "Your {family} told me about the {emotion} you felt after the {sport} match.",
    "We are planning a trip to {Country} in {Month} and would love you to join us.",
    "Please bring the {tool} and the {color} {clothing} you borrowed.",
    "With love from your {family}, {First_name}.",
)
DIALOGUE = (
    "\"Have you seen my {clothing}?\" asked {First_name}.",
    "\"It is on the {furniture},\" {first_name} {speech_verb}.",
    "\"Why are you so {size_adjective}?\" the {animal} asked the {animal}.",
    "\"I {cognition_verb} it was {weekday},\" {First_name} {speech_verb} quietly.",
    "\"No, {negation},\" {speech_verb} the {occupation}, \"the {vehicle} leaves at {time}.\"",
    "\"Is that a {bird} or a {insect}?\" \"A {bird}, I think.\"",
)
FAQ = (
    "Q: How many {animal}s live in {Country}? A: About {big}.",
    "Q: What is the capital of {Country}? A: {City}.",
    "Q: Can I bring a {animal} on the {vehicle}? A: {negation}, only small pets are allowed.",
    "Q: When does the {building} open? A: At {time} on {weekday}s.",
    "Q: What colour is a {fruit}? A: Usually {color}.",
    "Q: Who wrote the book about {sea_creature}s? A: {Full_name}, in {year}.",
)
NATURE = (
    "The {landform} was lined with {plant} trees and {color} {plant}s.",
    "In {Month}, {bird}s return to the {landform} to nest among the {plant}.",
    "A {size_adjective} {animal} drank from the {landform} as {weather} gathered overhead.",
    "The {plant} smells of {fruit} after the {weather}.",
    "Under the {plant}, a {insect} and a {insect} fought over a fallen {fruit}.",
)
LEGAL = (
    "Clause {small}.{small}: The {law} shall pay the sum of {price} within {small} days.",
    "This {law} is governed by the laws of {Country}.",
    "Neither party may assign this {law} without written consent.",
    "Any dispute shall be referred to the {law} in {City}.",
    "The {law} agrees to provide {num} units of {material} by {date}.",
)

PROSE_GENERATORS: dict[str, tuple[str, ...]] = {
    "story": STORY, "news": NEWS, "biography": BIOGRAPHY, "recipe": RECIPE, "weather": WEATHER,
    "sport": SPORT, "travel": TRAVEL, "science": SCIENCE, "medical": MEDICAL, "review": REVIEW,
    "letter": LETTER, "dialogue": DIALOGUE, "faq": FAQ, "nature": NATURE, "legal": LEGAL,
}


def prose(kind: str, r: random.Random) -> str:
    """One document of ``kind``: one to three paragraphs of sampled templates."""
    templates = PROSE_GENERATORS[kind]
    if kind == "letter":
        return " ".join(fill(t, r) for t in templates if r.random() < 0.8 or t.startswith("Dear"))
    return "\n\n".join(paragraph(r, templates) for _ in range(r.randint(1, 3)))
