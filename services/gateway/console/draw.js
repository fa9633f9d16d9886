// People on a canvas: boxes, COCO-17 skeletons, keypoints coloured by confidence.

export const COCO_EDGES = [
  [0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10],
  [5, 11], [6, 12], [11, 12], [11, 13], [13, 15], [12, 14], [14, 16],
];
const PERSON_COLOURS = ["#ff5d8f", "#38bdf8", "#f59e0b", "#a78bfa", "#34d399", "#f87171"];
// viridis stops: colour-blind safe and readable on photos with a dark outline
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

export function confidenceColour(score) {
  const t = Math.min(Math.max(score, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2);
  const f = t - i;
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
  const mix = (k) => Math.round(a[k] + (b[k] - a[k]) * f);
  return `rgb(${mix(0)}, ${mix(1)}, ${mix(2)})`;
}

export function personColour(index) {
  return PERSON_COLOURS[index % PERSON_COLOURS.length];
}

/** Draw ``people`` (in source-image pixels) scaled by ``scale``; returns how many keypoints
 * are at or above the threshold. */
export function drawPeople(ctx, people, { threshold = 0.3, scale = 1, lineWidth = 3 } = {}) {
  let shown = 0;
  const r = Math.max(3, lineWidth * 1.4);
  people.forEach((person, p) => {
    const colour = personColour(p);
    const [x1, y1, x2, y2] = person.box.map((v) => v * scale);
    ctx.save();
    ctx.lineWidth = Math.max(1.5, lineWidth * 0.6);
    ctx.strokeStyle = colour;
    ctx.setLineDash([8, 5]);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.setLineDash([]);
    const label = `#${p + 1} ${person.score.toFixed(2)}`;
    ctx.font = `600 ${Math.max(12, lineWidth * 4.5)}px system-ui, sans-serif`;
    const w = ctx.measureText(label).width + 10;
    const h = Math.max(18, lineWidth * 6);
    ctx.fillStyle = colour;
    ctx.fillRect(x1, Math.max(0, y1 - h), w, h);
    ctx.fillStyle = "#10131f";
    ctx.fillText(label, x1 + 5, Math.max(0, y1 - h) + h * 0.75);

    const kp = person.keypoints;
    ctx.lineCap = "round";
    for (const [a, b] of COCO_EDGES) {
      if (kp[a].score < threshold || kp[b].score < threshold) continue;
      ctx.strokeStyle = "rgb(10 12 20 / 55%)";
      ctx.lineWidth = lineWidth + 2.5;
      line(ctx, kp[a], kp[b], scale);
      ctx.strokeStyle = colour;
      ctx.lineWidth = lineWidth;
      line(ctx, kp[a], kp[b], scale);
    }
    for (const k of kp) {
      if (k.score < threshold) continue;
      shown += 1;
      ctx.beginPath();
      ctx.arc(k.x * scale, k.y * scale, r, 0, Math.PI * 2);
      ctx.fillStyle = confidenceColour(k.score);
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#0b0d16";
      ctx.stroke();
    }
    ctx.restore();
  });
  return shown;
}

function line(ctx, a, b, scale) {
  ctx.beginPath();
  ctx.moveTo(a.x * scale, a.y * scale);
  ctx.lineTo(b.x * scale, b.y * scale);
  ctx.stroke();
}

/** The keypoint nearest to (x, y) in source pixels within ``radius``, among those shown. */
export function nearestKeypoint(people, x, y, radius, threshold) {
  let best = null;
  people.forEach((person, p) => {
    person.keypoints.forEach((k) => {
      if (k.score < threshold) return;
      const d = Math.hypot(k.x - x, k.y - y);
      if (d <= radius && (!best || d < best.distance)) best = { person: p, keypoint: k, distance: d };
    });
  });
  return best;
}
