// pm2 start docs/deploy/ecosystem.config.js  (from the repo root)
module.exports = {
  apps: [{
    name: "sn29-validator",
    script: "neurons/validator.py",
    interpreter: ".venv/bin/python",
    args: "--netuid 29 --subtensor.network finney --wallet.name validator --wallet.hotkey default " +
          "--model-dir /data/sn29/validator --device cuda --disk-budget-gb 400",
    env: { PYTHONUNBUFFERED: "1", HF_HOME: "/data/sn29/hf" },
    autorestart: true,
    restart_delay: 30000,
  }],
};
