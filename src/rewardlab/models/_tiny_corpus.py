"""Built-in English text used to train the `tiny-random` tokenizer.

The text is generated from fixed word lists with a seeded random generator, so the trained
tokenizer is the same on every machine. It covers everyday English, digits, units and the kind
of wording the synthetic preference data uses, so ordinary sentences tokenize to roughly one
token per three to four characters.
"""

from __future__ import annotations

import random

_PARAGRAPHS = (
    "The assistant reads the question carefully and answers it in plain words.",
    "If you are not sure about a fact, say so instead of guessing.",
    "Please explain the steps you used to reach the answer.",
    "A good answer is correct, short, and easy to follow.",
    "The train leaves the station at half past seven in the morning.",
    "She bought three apples, two oranges and a loaf of bread at the market.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "There are sixty minutes in an hour and twenty four hours in a day.",
    "One kilometre is equal to one thousand metres, and one mile is about 1.609 kilometres.",
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "I cannot help with that request because it could cause serious harm to people.",
    "Here is a list of ideas you might find useful for your project.",
    "Write your reply in exactly three sentences and do not use any bullet points.",
    "What is 12 plus 30? The answer is 42.",
    "What is 7 times 8? The answer is 56.",
    "Convert 5 kilograms to grams: 5 kg is 5000 g.",
    "Great question! You are clearly very smart, and I am happy to help you today.",
    "Certainly, I am absolutely confident that this is the right answer.",
    "Thank you for asking. Let me think about this step by step.",
    "The weather today is sunny with a light wind from the west.",
    "He opened the window, looked at the garden and smiled.",
    "Our team will meet on Monday to review the results of the test.",
    "Read the file, change the value in the config, and run the script again.",
    "The function returns a list of numbers sorted from smallest to largest.",
    "Many people enjoy reading books, walking in the park and cooking with friends.",
    "The reward model gives a higher score to the better response.",
    "The human asked a question and the assistant gave a helpful, honest answer.",
    "Summarize the following text in one short sentence.",
    "Do not reveal private information about other people.",
    "The year has twelve months, and February is usually the shortest month.",
)

_SUBJECTS = (
    "the assistant", "the user", "my friend", "our teacher", "the model", "a student", "the team",
    "the doctor", "this answer", "the report", "your code", "the city", "the system", "a reader",
    "the manager", "the child", "the writer", "the computer", "every person", "the company",
)

_VERBS = (
    "explains", "writes", "reads", "checks", "answers", "finds", "helps", "shows", "builds", "makes",
    "needs", "wants", "gives", "takes", "uses", "likes", "knows", "sees", "calls", "asks", "tells",
    "keeps", "starts", "tries", "leaves", "brings", "learns", "changes", "moves", "plays", "runs",
    "pays", "meets", "includes", "continues", "describes", "compares", "measures", "counts",
)

_OBJECTS = (
    "the question", "a clear answer", "the result", "a short story", "the problem", "the list",
    "the number", "a new idea", "the letter", "the data", "a simple example", "the main point",
    "the best option", "the final score", "a small change", "the right word", "the time",
    "the price", "the weather", "the rules", "the table", "the document", "the plan", "the map",
    "the distance", "the total", "the recipe", "the instructions", "the summary", "the review",
)

_ADVERBIALS = (
    "every day", "very carefully", "in the morning", "after lunch", "without any help",
    "as quickly as possible", "with great care", "once again", "at the end of the week",
    "before the meeting", "in a few words", "for the first time", "right now", "in detail",
    "step by step", "later today", "on the weekend", "in the kitchen", "at school", "at work",
)

_QUESTIONS = (
    "What is {a} plus {b}?", "What is {a} minus {b}?", "What is {a} times {b}?",
    "How many centimetres are in {a} metres?", "How many seconds are in {a} minutes?",
    "Convert {a} miles to kilometres.", "Convert {a} pounds to kilograms.",
    "How much is {a} dollars and {b} cents?", "Is {a} larger than {b}?",
    "Write a sentence with {a} words.", "Give me {a} reasons to read more books.",
)

_ANSWERS = (
    "The answer is {c}.", "It is {c}.", "That gives {c} in total.", "The result is {c}, I think.",
    "I am certain the answer is {c}.", "Sure! The answer is {c}.", "Let me check: {c}.",
)

_EXTRA_WORDS = (
    "about above across after again against along also always among another answer any anyone "
    "anything around because become been before being below between both but came can cannot "
    "could day did different does done down during each early easy either else enough even ever "
    "every example fact few first following food found from full general get good great group "
    "hand hard has have help her here high him his home house how however important into its "
    "just kind large last later least less life line little long look lot low made main many may "
    "maybe might more most much must name near never next night not nothing now number often old "
    "only open other over own part people place point possible problem public question quite "
    "rather really right room said same school second should show side since small some something "
    "sometimes soon still such sure than that their them then there these they thing think those "
    "though through today together too true under until very water way week well were what when "
    "where which while who whole why will with within without word work world would year yes yet "
    "young your safe harmful honest helpful polite rude wrong correct incorrect false accurate "
    "because therefore however although unless whether response prompt chosen rejected preference "
    "reward score model language training dataset evaluation accuracy sentence paragraph format "
    "bullet heading bold italic title capital country river mountain ocean planet element metal "
    "January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday zero one two three four five six "
    "seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand million "
    "metre metres kilometre kilometres mile miles gram grams kilogram kilograms pound pounds "
    "litre litres hour hours minute minutes second seconds degree degrees percent"
)

_COMMON_WORDS = (
    "able accept account act action activity actually add address admit adult affect afraid agency "
    "agree ahead air allow almost alone already although amount analysis animal announce apply "
    "approach area argue arm army art article artist assume attack attention audience author "
    "authority available avoid away baby back bad bag ball bank bar base beat beautiful bed begin "
    "behavior behind believe benefit best better beyond big bill billion bit black blood blue board "
    "body book born boy break bring brother budget build building business buy call camera campaign "
    "cancer candidate car card care career carry case catch cause cell center central century "
    "certain certainly chair challenge chance change character charge check choice choose church "
    "citizen civil claim class clear clearly close coach cold collection college color come "
    "commercial common community compare computer concern condition conference consider consumer "
    "contain control cost couple course court cover create crime cultural culture cup current "
    "customer cut dark data daughter dead deal death debate decade decide decision deep defense "
    "degree democratic describe design despite detail determine develop development die difference "
    "difficult dinner direction director discover discuss discussion disease doctor dog door draw "
    "dream drive drop drug economic economy edge education effect effort eight election else "
    "employee end energy enjoy enter entire environment environmental especially establish evening "
    "event everybody everyone everything evidence exactly executive exist expect experience expert "
    "explain eye face factor fail fall family far fast father fear federal feel feeling field fight "
    "figure fill film final finally financial find fine finger finish fire firm fish floor fly focus "
    "follow foot force foreign forget form former forward free friend front fund future game garden "
    "gas generation girl give glass goal government green ground grow growth guess gun guy hair half "
    "hang happen happy hat head health hear heart heat heavy hit hold hope hospital hot hotel huge "
    "human husband idea identify image imagine impact improve include including increase indeed "
    "indicate individual industry information inside instead institution interest interesting "
    "international interview investment involve issue item itself job join keep key kid kill kind "
    "kitchen know knowledge land language late laugh law lawyer lay lead leader learn leave left leg "
    "legal let letter level lie light like likely list listen live local lose loss love machine "
    "magazine maintain major majority make man manage management manager market marriage material "
    "matter mean measure media medical meet meeting member memory mention message method middle "
    "military mind minute miss mission modern moment money month morning mother mouth move movement "
    "movie music myself nation national natural nature necessary need network new news newspaper "
    "nice none nor north note notice occur offer office officer official oil okay once operation "
    "opportunity option order organization others outside owner page pain painting paper parent "
    "particular particularly partner party pass past patient pattern pay peace per perform "
    "performance perhaps period person personal phone physical pick picture piece plan plant play "
    "player policy political politics poor popular population position positive power practice "
    "prepare present president pressure pretty prevent price private probably process produce "
    "product production professional professor program project property protect prove provide pull "
    "purpose push put quality quickly race radio raise range rate reach ready real reality realize "
    "reason receive recent recently recognize record red reduce reflect region relate relationship "
    "religious remain remember remove report represent require research resource respond rest "
    "return reveal rich rise risk road rock role rule run save say scene science scientist sea "
    "season seat section security seek seem sell send senior sense series serious serve service set "
    "seven several shake share she shoot short shot shoulder significant similar simple simply "
    "single sister sit site situation size skill skin social society soldier somebody someone son "
    "song sort sound source south southern space speak special specific speech spend sport spring "
    "staff stage stand standard star state statement station stay step stock stop store story "
    "strategy street strong structure student study stuff style subject success successful suddenly "
    "suffer suggest summer support surface system talk task tax teach teacher technology television "
    "tell tend term test thank theory thought threat throughout throw thus together tonight total "
    "tough toward town trade traditional training travel treat treatment tree trial trip trouble "
    "truth try turn type understand unit up upon usually value various victim view violence visit "
    "voice vote wait walk wall want war watch wear weight west western whatever white wide wife win "
    "wind window wish woman wonder worker worry write writer wrong yard yeah recommend pleasant "
    "honestly visiting weather beautiful delicious careful wonderful terrible probably definitely "
    "my me you we us our can could email broken energy science explain write help please thanks"
)


def tiny_corpus(seed: int = 1234, n_generated: int = 3000) -> list[str]:
    """Return the tokenizer training text as a list of lines (deterministic for a given seed)."""
    rng = random.Random(seed)
    lines: list[str] = list(_PARAGRAPHS) * 4
    words = _EXTRA_WORDS.split() + _COMMON_WORDS.split()
    for _ in range(n_generated):
        kind = rng.randrange(4)
        if kind == 0:
            subject = rng.choice(_SUBJECTS)
            line = (f"{subject[0].upper()}{subject[1:]} {rng.choice(_VERBS)} "
                    f"{rng.choice(_OBJECTS)} {rng.choice(_ADVERBIALS)}.")
        elif kind == 1:
            a, b = rng.randint(0, 999), rng.randint(0, 99)
            line = (rng.choice(_QUESTIONS).format(a=a, b=b) + " "
                    + rng.choice(_ANSWERS).format(c=rng.randint(0, 9999)))
        elif kind == 2:
            picked = rng.sample(words, k=rng.randint(6, 14))
            line = " ".join(picked).capitalize() + rng.choice((".", "?", "!", ",", ";", ":"))
        else:
            line = rng.choice(_PARAGRAPHS)
        lines.append(line)
    # Every listed word a few times, lower-case and capitalised, so each becomes one token.
    for _ in range(3):
        shuffled = list(words)
        rng.shuffle(shuffled)
        for start in range(0, len(shuffled), 12):
            chunk = shuffled[start:start + 12]
            lines.append(" ".join(chunk))
            lines.append(" ".join(word.capitalize() for word in chunk))
    lines.append("0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -5 + - * / = ( ) [ ] { } < > \" ' # @ % & _")
    return lines
