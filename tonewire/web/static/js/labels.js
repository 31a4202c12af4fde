// Words for the labels the server sends. Tone and mood labels are heuristics: the page says
// "estimated" next to them and never shows one without its confidence.

export const TONE_WORDS = {
  calm: "Calm",
  neutral: "As usual",
  animated: "Animated",
  tense: "Tense",
  subdued: "Subdued",
};

// The same prefixes as tonewire/analysis/tone.py ELCOR_PREFIX, so the toggle works on any
// session without restarting it.
export const ELCOR_PREFIX = {
  calm: "[Calmly]",
  neutral: "[Evenly]",
  animated: "[Animatedly]",
  tense: "[Tensely]",
  subdued: "[Flatly]",
};

export const SHIFT_WORDS = {
  rising: "Rising: more energy than a moment ago",
  falling: "Falling: less energy than a moment ago",
};

export function toneWord(label) {
  return TONE_WORDS[label] || label;
}

export function emotionText(emotion) {
  if (!emotion || !emotion.primary) return { word: "No clear mood", conf: "" };
  const word = emotion.primary[0].toUpperCase() + emotion.primary.slice(1);
  return { word, conf: `confidence ${Math.round(emotion.confidence * 100)}%` };
}
