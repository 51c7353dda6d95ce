"""Fixed preambles that condition the caption LM (both sides know them; they cost no bits).

A caption is far cheaper to code when the LM has just read a few texts like it. The examples
below were written by hand for stic in the style of LLaVA-1.5 "describe this image in detail"
answers (the captions stic's pipeline produces); they describe made-up everyday scenes and are
not taken from any evaluation set. Changing a preamble changes every code: the coder's
fingerprint covers the preamble tokens, so old files are refused rather than mis-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

EXAMPLE_DESCRIPTIONS = (
    (
        " The image features a kitchen with white cabinets and a large window above the sink. A wooden"
        " table with four chairs is placed in the center of the room, and a bowl of fruit sits on the"
        " counter next to a coffee maker. The kitchen appears clean and well-organized, and the natural"
        " light coming through the window creates a bright and welcoming atmosphere."
    ),
    (
        " The image depicts a busy city street with a red double-decker bus driving down the road."
        " Several people are walking along the sidewalk, some of them carrying handbags and backpacks."
        " There are also a few cars parked on the side of the street, and a traffic light can be seen"
        " near the intersection. The tall buildings in the background add to the urban feel of the scene."
    ),
    (
        " The image shows a group of surfers standing on a sandy beach, holding their surfboards and"
        " looking out at the ocean. The waves are rolling in, and the sky above is clear and blue. Some"
        " of the surfers are wearing wetsuits, while others are in swimwear. The scene captures the"
        " excitement of a day at the beach, as the surfers prepare to ride the waves."
    ),
    (
        " The image features a cozy living room with a brown couch and a coffee table in front of it. A"
        " cat is lying on the couch, resting comfortably on a soft blanket. There is a television"
        " mounted on the wall, and a potted plant is placed near the window. The room is decorated with"
        " a few framed pictures, giving it a warm and inviting atmosphere."
    ),
    (
        " The image captures a tennis player in the middle of a swing, hitting the ball with a racket on"
        " a hard court. The player is wearing a white shirt and shorts, and appears to be focused on the"
        " game. In the background, there are several spectators watching the match from the stands."
        " The scene conveys the energy and concentration of a competitive tennis match."
    ),
    (
        " The image shows two giraffes standing in a grassy field, surrounded by tall trees. One of the"
        " giraffes is eating leaves from a tree, while the other is looking in a different direction."
        " The giraffes appear to be in their natural habitat, and the lush greenery creates a peaceful"
        " setting. The scene highlights the beauty and grace of these tall animals."
    ),
    (
        " The image features a white plate filled with a delicious meal, including a piece of grilled"
        " chicken, a serving of rice, and a variety of colorful vegetables such as broccoli and carrots."
        " A fork and a knife are placed next to the plate on a wooden dining table. The meal looks fresh"
        " and appetizing, making it an inviting sight for anyone who is hungry."
    ),
    (
        " The image depicts a train station with a long passenger train stopped at the platform. Several"
        " people are standing on the platform, waiting to board the train or greeting arriving"
        " passengers. The station has a large roof supported by metal beams, and a clock is visible"
        " above the entrance. The scene captures the everyday hustle and bustle of travel."
    ),
    (
        " The image shows a skier going down a snowy slope, wearing a red jacket, a helmet, and goggles."
        " The skier is holding ski poles and appears to be enjoying the ride. The mountain is covered in"
        " fresh white snow, and a few pine trees can be seen along the sides of the slope. The clear sky"
        " and bright sunlight make it a perfect day for skiing."
    ),
    (
        " The image features a small harbor with several boats docked along a wooden pier. The water is"
        " calm, reflecting the colorful boats and the buildings on the shore. A few seagulls are flying"
        " above the water, and there are people walking along the pier. The combination of the boats,"
        " the water, and the buildings creates a charming and picturesque scene."
    ),
)


@dataclass(frozen=True)
class Preamble:
    """What the LM reads before a caption, and the token that ends a caption.

    The prefix is BOS (or a learned prefix), `header`, then each example as `lead` + example +
    terminator, then `lead` again; the caption follows and is coded up to its own terminator. Each piece is tokenized on
    its own, exactly as the caption will be, so the examples show the LM the coded pattern.
    `terminator` None (or text that is not one token for the tokenizer) means its EOS token.
    """

    name: str
    header: str = ""
    examples: tuple[str, ...] = ()
    lead: str = ""
    terminator: str | None = None
    #: True: a learned prefix (stic.text.prefix) stands in for BOS, header and examples.
    learned: bool = False

    def terminator_id(self, tokenizer) -> int:
        """The terminator's token id; EOS when there is none or it is not a single token."""
        if self.terminator is not None:
            ids = tokenizer.encode(self.terminator, add_special_tokens=False)
            if len(ids) == 1:
                return int(ids[0])
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no EOS token and the terminator is not one token")
        return int(tokenizer.eos_token_id)

    def prefix_ids(self, tokenizer, start_ids: list[int]) -> list[int]:
        def tokens(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False)) if text else []

        end = self.terminator_id(tokenizer)
        ids = ([] if self.learned else list(start_ids)) + tokens(self.header)
        for example in self.examples:
            ids += tokens(self.lead) + tokens(example) + [end]
        return ids + tokens(self.lead)


#: Named preambles. "none" is BOS alone.
PREAMBLES = {
    p.name: p
    for p in (
        Preamble("none"),
        Preamble("plain", header="A detailed description of a photograph:\n"),
        Preamble(
            "examples",
            header="Detailed descriptions of photographs.\n\n",
            examples=EXAMPLE_DESCRIPTIONS,
            lead="Description:",
            terminator="\n\n",
        ),
        Preamble("tuned", lead="Description:", learned=True),
    )
}


def get_preamble(name: str) -> Preamble:
    """Preamble by name (see PREAMBLES)."""
    try:
        return PREAMBLES[name]
    except KeyError:
        raise KeyError(f"unknown preamble {name!r}; known: {', '.join(PREAMBLES)}") from None
