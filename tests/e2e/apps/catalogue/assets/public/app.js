fetch("../hello").then(r => r.json()).then(d => { document.body.append(d.message); });
